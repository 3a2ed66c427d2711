-- orders_by_country -> analytics: a running count of orders per country, keyed by country.
-- ctx.get/ctx.put is the state of the record's input partition, kept in the stage's changelog
-- topic (order-fanout.analytics.changelog) and restored with the input position it was
-- committed with, so the counts survive restarts. The orders arrive re-keyed by country, so
-- all of a country's orders are in one partition and one count.
function process(record, ctx)
  local o = json.decode(record.value)
  local n = (tonumber(ctx.get(o.country)) or 0) + 1
  ctx.put(o.country, tostring(n))
  return { key = o.country, value = json.encode({ country = o.country, orders = n,
                                                  last_order = o.id }) }
end
