-- salt: spreads a hot key over several partitions. A key named in config.keys (comma-separated;
-- empty or absent: every key) is rewritten to "<key>_<n>", n going round from 0 to
-- config.buckets - 1 (default 8), so one busy key no longer lands all its records on one
-- partition and one instance. Value, headers and timestamp stay.
--
--   { name = "spread", input = "clicks", output = "clicks-salted", script = "salt",
--     config = { keys = "a17,a42", buckets = 6 } }
--
-- The price: records of a salted key are no longer in one order, and whatever aggregates them
-- downstream computes partial results per "<key>_<n>" that a later stage adds up under the key
-- (strip the suffix with record.key:match("^(.*)_%d+$")).
local hot, buckets, next_bucket

local function setup(config)
    buckets = tonumber(config.buckets or "8")
    assert(buckets and buckets >= 1, "salt: config.buckets must be a number >= 1")
    if config.keys and config.keys ~= "" then
        hot = {}
        for key in config.keys:gmatch("[^,]+") do
            hot[key] = true
        end
    end
end

function process(record, ctx)
    if not buckets then
        setup(ctx.config)
        next_bucket = ctx.instance % buckets
    end
    local key = record.key
    if key ~= nil and (hot == nil or hot[key]) then
        key = key .. "_" .. next_bucket
        next_bucket = (next_bucket + 1) % buckets
    end
    ctx.emit(nil, key, record.value, record.headers, record.timestamp)
end
