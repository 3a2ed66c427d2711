-- map: replaces each record's value by what an expression makes of the record; the key,
-- headers and timestamp stay. A table result is written as JSON; nil drops the record.
--
--   { name = "cents", input = "orders", output = "orders-cents",
--     map = "json.encode({ id = json.decode(record.value).id, cents = 100 })" }
local make

function process(record, ctx)
    if not make then
        make = assert(load("local record = ...\nreturn (" .. ctx.config.expr .. ")", "=map"))
    end
    local value = make(record)
    if value == nil then
        return
    end
    if type(value) == "table" then
        value = json.encode(value)
    end
    ctx.emit(nil, record.key, value, record.headers, record.timestamp)
end
