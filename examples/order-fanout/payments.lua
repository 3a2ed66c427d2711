-- orders -> charges: the amount to charge, in integer cents of the configured currency.
-- Each instance is a separate process; ctx.instance says which one handled the record.
function process(record, ctx)
  local o = json.decode(record.value)
  ctx.emit(nil, record.key,   -- nil topic: this stage's output topic ("charges")
           json.encode({ order_id = o.id, amount_cents = math.floor(o.amount * 100 + 0.5),
                         currency = ctx.config.currency }),
           { ["charged-by"] = "payments-" .. ctx.instance })
end
