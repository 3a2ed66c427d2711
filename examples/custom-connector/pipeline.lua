-- Words through the out-of-tree sink: `sluice produce text` in, running totals out. The path
-- is relative to the broker's working folder (run.sh starts it in its temp folder).
return {
  name = "wordcount",
  topics = { text = 1 },
  sinks = {
    { name = "count", input = "text", plugin = "wordcount_sink",
      config = { path = "totals.txt" } },
  },
}
