-- route: sends each record, unchanged, to the topic an expression names; nil drops it.
--
--   { name = "by-country", input = "orders",
--     route = "'orders-' .. json.decode(record.value).country" }
--
-- The topics must exist (declare them in the pipeline's topics); a record routed to a topic
-- that does not is a failed record.
local pick

function process(record, ctx)
    if not pick then
        pick = assert(load("local record = ...\nreturn (" .. ctx.config.expr .. ")", "=route"))
    end
    local topic = pick(record)
    if topic ~= nil then
        ctx.emit(tostring(topic), record.key, record.value, record.headers, record.timestamp)
    end
end
