-- "Sends" a notification: writes what would be sent to the stage's output topic, `sent`.
-- To show the retry path, a notification fails on purpose when its JSON value says so:
--   "flaky": true  fails on the first try and on the first retry, succeeds on the second;
--   "bad": true    always fails, so it ends in notifications.dlq.
-- A record read from notifications.retry.<n> carries the header sluice.attempt = "<n>"; a
-- record read from notifications itself (first try, or replayed from the DLQ) has none.
function process(record, ctx)
  local n = json.decode(record.value)
  local attempt = tonumber(record.headers["sluice.attempt"] or "0")
  if n.bad then
    -- error(msg, 0): the message without "send.lua:<line>:" in front; it becomes the
    -- sluice.error header of the retried / dead-lettered record.
    error("mail server rejected " .. tostring(n.to), 0)
  end
  if n.flaky and attempt < 2 then
    error("mail server busy (attempt " .. attempt .. ")", 0)
  end
  ctx.emit(nil, record.key,
           json.encode({ to = n.to, text = n.text, sent_on_attempt = attempt }))
end
