-- filter: passes on the records for which an expression is true, unchanged (key, value,
-- headers, timestamp), to the stage's output topic.
--
--   { name = "big", input = "orders", output = "big-orders",
--     filter = "json.decode(record.value).amount > 100" }
--
-- The expression sees `record` (key, value, headers, timestamp, topic, partition, offset) and
-- the `json` and `msgpack` codecs. A record for which it fails is a failed record (retry topics,
-- then the dead-letter topic), like any processing error.
local test

function process(record, ctx)
    if not test then
        test = assert(load("local record = ...\nreturn (" .. ctx.config.expr .. ")", "=filter"))
    end
    if test(record) then
        ctx.emit(nil, record.key, record.value, record.headers, record.timestamp)
    end
end
