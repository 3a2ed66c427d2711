return {
  name = "demo",
  topics = { orders = { partitions = 3 }, upper = 3, big = 3 },
  processors = {
    { name = "up", input = "orders", output = "upper", plugin = "upper" },
    { name = "big", input = "orders", output = "big", filter = "#record.value > 5",
      retry = { delays = {"1s", "2s"} } },
  },
}
