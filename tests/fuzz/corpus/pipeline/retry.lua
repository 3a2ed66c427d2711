return { name = "jobs", topics = { jobs = { partitions = 2, config = { ["retention.ms"] = 1000 } } },
  processors = { { name = "run", input = { "jobs" }, output = "done", script = "x.lua", instances = 2,
    retry = { delays = { "1s", "2m" }, dlq = "jobs.dlq" }, limits = { instructions = 100000 } } },
  sinks = { { name = "s", input = "done", plugin = "file" } } }
