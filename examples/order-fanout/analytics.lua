-- orders -> analytics: a running count of orders per country, keyed by country.
-- ctx.get/ctx.put is state local to this (single) instance and kept in memory only: it
-- starts empty again after a restart, so the counts are a demo, not a ledger.
function process(record, ctx)
  local o = json.decode(record.value)
  local n = (tonumber(ctx.get(o.country)) or 0) + 1
  ctx.put(o.country, tostring(n))
  return { key = o.country, value = json.encode({ country = o.country, orders = n,
                                                  last_order = o.id }) }
end
