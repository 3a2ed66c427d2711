-- One input topic, three independent consumers. Each processor below is its own consumer
-- group (named after the pipeline and the stage), so every stage sees every order, keeps its
-- own committed offsets and can fall behind or be redeployed without affecting the others.
return {
  name = "order-fanout",
  topics = {
    orders    = { partitions = 3, config = { ["retention.ms"] = "86400000" } },  -- one day
    shipments = 3,
    charges   = 3,
    orders_by_country = 3,
    analytics = 1,
  },
  processors = {
    { name = "logistics", input = "orders", output = "shipments", script = "logistics.lua" },
    { name = "payments",  input = "orders", output = "charges",   script = "payments.lua",
      instances = 2,                       -- two processes share the 3 partitions
      config = { currency = "EUR" } },    -- read by the script as ctx.config.currency
    -- Counting per country needs each country's orders in one partition (state is kept per
    -- input partition): a repartition step re-keys the orders by country first.
    { name = "by_country", input = "orders", output = "orders_by_country", script = "rekey",
      config = { expr = "json.decode(record.value).country" } },
    { name = "analytics", input = "orders_by_country", output = "analytics",
      script = "analytics.lua" },
  },
}
