-- Clicks per ad per minute. The windows library does the windowing: one-minute tumbling
-- windows aligned to the minute, per-partition stream time, a 5 s grace period, one result per
-- ad and window once the window closes, state kept in the stage's changelog. What is left to
-- write is the aggregation: a count, and the shape of the result.
local windows = require("windows")

windows.tumbling {
    size = 60000,
    grace = 5000,
    -- Event time: the click's "ts" field, in ms. Nothing else of the click is needed, so
    -- json.field reads that one member instead of decoding the whole click into a table.
    decode = false,
    time = function(click) return json.field(click, "ts") end,
    init = function() return 0 end,
    add = function(count) return count + 1 end,
    -- Built by hand rather than with json.encode, so the fields keep this order.
    result = function(ad, window_start, window_end, count)
        return string.format('{"ad_id":%s,"window_start":%d,"window_end":%d,"count":%d}',
                             json.encode(ad), window_start, window_end, count)
    end,
    late_topic = "clicks_late",
}:install()
