-- orders -> shipments: what the warehouse needs to ship an order, keyed by order id.
function process(record, ctx)
  local o = json.decode(record.value)
  return {
    key = record.key,
    value = json.encode({ order_id = o.id, address = o.address, country = o.country,
                          items = #o.items }),
  }
end
