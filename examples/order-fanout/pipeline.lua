-- One input topic, three independent consumers. Each processor below is its own consumer
-- group (named after the pipeline and the stage), so every stage sees every order, keeps its
-- own committed offsets and can fall behind or be redeployed without affecting the others.
return {
  name = "order-fanout",
  topics = {
    orders    = { partitions = 3, config = { ["retention.ms"] = "86400000" } },  -- one day
    shipments = 3,
    charges   = 3,
    analytics = 1,
  },
  processors = {
    { name = "logistics", input = "orders", output = "shipments", script = "logistics.lua" },
    { name = "payments",  input = "orders", output = "charges",   script = "payments.lua",
      instances = 2,                       -- two processes share the 3 partitions
      config = { currency = "EUR" } },    -- read by the script as ctx.config.currency
    { name = "analytics", input = "orders", output = "analytics", script = "analytics.lua" },
  },
}
