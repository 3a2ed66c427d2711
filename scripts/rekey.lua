-- rekey: writes each record again with the key an expression makes of it, so that the records
-- land in the partition of their new key. This is the repartition step before an aggregation
-- or a join by something other than the input's key: records of one country, or of one ad,
-- then meet in one partition and one instance's state. Value, headers and timestamp stay; a
-- nil key drops the record.
--
--   { name = "by_country", input = "orders", output = "orders_by_country", script = "rekey",
--     config = { expr = "json.decode(record.value).country" } }
local make

function process(record, ctx)
    if not make then
        make = assert(load("local record = ...\nreturn (" .. ctx.config.expr .. ")", "=rekey"))
    end
    local key = make(record)
    if key == nil then
        return
    end
    ctx.emit(nil, tostring(key), record.value, record.headers, record.timestamp)
end
