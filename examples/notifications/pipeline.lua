-- Notifications with retries and a dead-letter topic.
--
-- A record whose send fails (the script calls error()) is not lost and does not block the
-- records behind it: it is written to notifications.retry.1 and processed again no earlier
-- than 1s later; if it fails again, to notifications.retry.2 (2s later); if it fails there
-- too, to notifications.dlq. The stage reads the retry topics itself; they and the DLQ are
-- created at deploy time with the partition count of `notifications`.
return {
  name = "notifications",
  topics = {
    notifications = 3,
    sent = 3,
  },
  processors = {
    { name = "send", input = "notifications", output = "sent", script = "send.lua",
      retry = { delays = { "1s", "2s" }, dlq = "notifications.dlq" } },
  },
}
