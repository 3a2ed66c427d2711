-- Synthetic clicks for the ad-click aggregator (pipeline.lua): 2,000 a second with the time of
-- day as event time, over 50 ads, one of which (a17, a campaign launch) takes 30% of them.
return {
    name = "adclick-clicks",
    topics = { { name = "clicks", partitions = 6 } },
    sources = {
        {
            name = "clicks", plugin = "generator", output = "clicks",
            config = {
                rate = "2000",
                key = "a{rand:50}",
                hot_key = "a17",
                hot_ratio = "0.3",
                value = '{"ad_id":"{key}","user_id":"u{rand:1000}","ts":{ts}}',
            },
        },
    },
}
