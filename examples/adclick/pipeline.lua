-- The ad-click aggregator: clicks in, clicks per ad per minute out.
--
--   clicks        6 partitions; key = ad id, value {"ad_id":"a17","user_id":"u3","ts":...}
--     per_minute  aggregate.lua, 2 instances, state in adclick.per_minute.changelog
--   ad_clicks_per_minute  key = ad id,
--                 value {"ad_id":"a17","window_start":...,"window_end":...,"count":42}
--   clicks_late   clicks that arrived after their minute had closed
--
-- Feed `clicks` yourself, or deploy generator.lua beside it for synthetic clicks.
return {
    name = "adclick",
    topics = {
        { name = "clicks", partitions = 6 },
        { name = "ad_clicks_per_minute", partitions = 6 },
        { name = "clicks_late", partitions = 1 },
    },
    processors = {
        {
            name = "per_minute", input = "clicks", output = "ad_clicks_per_minute",
            script = "aggregate.lua", instances = 2,
        },
    },
}
