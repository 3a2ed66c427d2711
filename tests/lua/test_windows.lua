-- Tests of scripts/windows.lua against brute-force references computed here from the
-- generated events (not from the library). Run from the repository root:
--   lua5.4 tests/lua/test_windows.lua          the tests
--   lua5.4 tests/lua/test_windows.lua bench    process_batch throughput on 1M synthetic clicks
package.path = "scripts/?.lua;tests/lua/?.lua;" .. package.path
json = require("cjson")
local mock = require("mock_ctx")
local check = mock.check

local P = 4 -- input partitions
local SIZE, ADVANCE, GRACE, GAP = 60000, 20000, 5000, 20000
local BASE = 1700000000000 + 12345 -- not minute-aligned: windows must align themselves

local TUMBLING = [[
local windows = require("windows")
windows.tumbling {
    size = 60000, grace = 5000, time = "ts",
    init = function() return 0 end,
    add = function(count, click) return count + 1 end,
    result = function(ad, start, stop, count)
        return json.encode { ad_id = ad, window_start = start, window_end = stop, count = count }
    end,
    late_topic = "clicks_late",
}:install()
]]

-- a table aggregate, so that state goes through JSON
local HOPPING = [[
local windows = require("windows")
windows.hopping {
    size = 60000, advance = 20000, grace = 5000, time = "ts",
    init = function() return { count = 0, sum = 0 } end,
    add = function(agg, click) agg.count = agg.count + 1; agg.sum = agg.sum + click.n; return agg end,
    result = function(ad, start, stop, agg)
        return json.encode { ad_id = ad, window_start = start, window_end = stop, count = agg.count, sum = agg.sum }
    end,
    late_topic = "clicks_late",
}:install()
]]

local SESSION = [[
local windows = require("windows")
windows.session {
    gap = 20000, grace = 5000, time = "ts",
    add = function(count) return count + 1 end,
    merge = function(a, b) return a + b end,
    result = function(ad, start, stop, count)
        return json.encode { ad_id = ad, window_start = start, window_end = stop, count = count }
    end,
    late_topic = "clicks_late",
}:install()
]]

---------------------------------------------------------------------------------------------
-- Input: clicks over P partitions. Key "hot" takes ~50% of the records; partition 0 starts 30
-- minutes ahead and half of it is read before the others start; partitions have idle spells
-- (which close sessions); delays put records out of order, most within grace, some beyond.
-- A few records are bad (truncated JSON, no ts, no value). The generator notes each record's
-- true event time (`ts`, floored) and `n`, which the references use instead of decoding.

local function partition_of(key)
    if key == "hot" then
        return 1
    end
    return tonumber(key:sub(2)) % P
end

local function generate(n, seed)
    math.randomseed(seed)
    local clock, step, lists = {}, { [0] = 900, 100, 300, 300 }, {}
    for p = 0, P - 1 do
        clock[p] = BASE + (p == 0 and 1800000 or 0)
        lists[p] = {}
    end
    for _ = 1, n do
        local key = math.random() < 0.5 and "hot" or ("k" .. math.random(1, 40))
        local p = partition_of(key)
        clock[p] = clock[p] + math.random(0, step[p])
        if math.random() < 0.002 then
            clock[p] = clock[p] + math.random(20000, 120000)
        end
        local u, delay = math.random(), nil
        if u < 0.85 then
            delay = math.random(0, 1500)
        elseif u < 0.95 then
            delay = math.random(1500, 5000)
        else
            delay = math.random(5001, 90000)
        end
        local ts, nv = clock[p] - delay, math.random(1, 9)
        local r = { key = key, timestamp = clock[p], partition = p, topic = "clicks", ts = ts, n = nv }
        local b = math.random()
        if b < 0.004 then
            r.value, r.bad = '{"ad_id":"' .. key .. '","ts":', "decode"
        elseif b < 0.008 then
            r.value, r.bad = string.format('{"ad_id":"%s","user_id":"u%d"}', key, math.random(999)), "time"
        elseif b < 0.010 then
            r.bad = "value"
        elseif b < 0.020 then -- a fraction of a millisecond: the event time is floored
            r.value = string.format('{"ad_id":"%s","user_id":"u%d","ts":%d.%d,"n":%d}', key, math.random(999), ts, math.random(1, 9), nv)
        else
            r.value = string.format('{"ad_id":"%s","user_id":"u%d","ts":%d,"n":%d}', key, math.random(999), ts, nv)
        end
        r.offset = #lists[p]
        lists[p][#lists[p] + 1] = r
    end
    -- read order: half of partition 0 first, then all partitions interleaved at random
    local records, next_of = {}, {}
    for p = 0, P - 1 do
        next_of[p] = 1
    end
    for _ = 1, #lists[0] // 2 do
        records[#records + 1] = lists[0][next_of[0]]
        next_of[0] = next_of[0] + 1
    end
    while #records < n do -- each partition's chance is its share of what is left: even progress
        local pick, p = math.random(1, n - #records), 0
        while pick > #lists[p] - next_of[p] + 1 do
            pick = pick - (#lists[p] - next_of[p] + 1)
            p = p + 1
        end
        records[#records + 1] = lists[p][next_of[p]]
        next_of[p] = next_of[p] + 1
    end
    return records
end

---------------------------------------------------------------------------------------------
-- References

-- Time windows: every window [s, s + SIZE) with s a multiple of `advance` covering t; a window
-- takes the record unless end + GRACE <= the partition's stream time so far; a record taken by
-- none is late. Returns windows by "key|start", split into closed (at the final stream time)
-- and open, the late record indices and the bad record indices.
local function reference_time_windows(records, advance)
    local st, wins, late, dead = {}, {}, {}, {}
    for idx, r in ipairs(records) do
        if r.bad then
            dead[idx] = r.bad
        else
            local t, p = r.ts, r.partition
            local s = st[p] or math.mininteger
            local taken = false
            for start = (t - SIZE) - (t - SIZE) % advance, t, advance do
                if start <= t and t < start + SIZE and start + SIZE + GRACE > s then
                    local id = r.key .. "|" .. start
                    local w = wins[id]
                    if not w then
                        w = { key = r.key, p = p, start = start, stop = start + SIZE, count = 0, sum = 0 }
                        wins[id] = w
                    end
                    w.count, w.sum, taken = w.count + 1, w.sum + r.n, true
                end
            end
            if not taken then
                late[#late + 1] = idx
            end
            if t > s then
                st[p] = t
            end
        end
    end
    local closed, open = {}, {}
    for id, w in pairs(wins) do
        if w.stop + GRACE <= st[w.p] then
            closed[id] = w
        else
            open[id] = w
        end
    end
    return { closed = closed, open = open, late = late, dead = dead, st = st }
end

-- Sessions: a record is late when t + GRACE < stream time; the other records of a key, sorted
-- by time, split into sessions wherever two neighbours are more than GAP apart. A session is
-- closed when the final stream time > last + GAP + GRACE.
local function reference_sessions(records)
    local st, times, late, dead = {}, {}, {}, {}
    for idx, r in ipairs(records) do
        if r.bad then
            dead[idx] = r.bad
        else
            local t, p = r.ts, r.partition
            local s = st[p] or math.mininteger
            if t + GRACE < s then
                late[#late + 1] = idx
            else
                times[r.key] = times[r.key] or {}
                table.insert(times[r.key], t)
            end
            if t > s then
                st[p] = t
            end
        end
    end
    local closed, open = {}, {}
    for key, list in pairs(times) do
        table.sort(list)
        local p = partition_of(key)
        local i = 1
        while i <= #list do
            local j = i
            while j < #list and list[j + 1] - list[j] <= GAP do
                j = j + 1
            end
            local w = { key = key, p = p, start = list[i], stop = list[j], count = j - i + 1 }
            local id = key .. "|" .. w.start
            if st[p] > w.stop + GAP + GRACE then
                closed[id] = w
            else
                open[id] = w
            end
            i = j + 1
        end
    end
    return { closed = closed, open = open, late = late, dead = dead, st = st }
end

---------------------------------------------------------------------------------------------
-- Checks

local function window_id(v)
    return v.ad_id .. "|" .. string.format("%d", v.window_start)
end

-- emitted: list of ctx.emitted entries. Every result must be a closed reference window with
-- its aggregate, emitted once; every closed window must be there; the late topic must carry
-- exactly the late records, unchanged.
local function check_results(label, emitted, ref, records, with_sum)
    local seen, late_out = {}, {}
    for _, e in ipairs(emitted) do
        if e.topic == "clicks_late" then
            late_out[#late_out + 1] = e
        elseif check(e.topic == nil, "%s: output to unexpected topic %s", label, tostring(e.topic)) then
            local v = json.decode(e.value)
            local id = window_id(v)
            check(not seen[id], "%s: window %s emitted more than once", label, id)
            seen[id] = true
            local w = ref.closed[id]
            if check(w, "%s: window %s emitted but it is not closed (open: %s)", label, id, tostring(ref.open[id] ~= nil)) then
                check(v.count == w.count, "%s: window %s count %s, expected %d", label, id, tostring(v.count), w.count)
                check(not with_sum or v.sum == w.sum, "%s: window %s sum %s, expected %d", label, id, tostring(v.sum), w.sum)
                check(v.window_end == w.stop, "%s: window %s end %s, expected %d", label, id, tostring(v.window_end), w.stop)
                check(e.key == w.key and e.timestamp == w.stop, "%s: window %s output key/timestamp %s/%s", label, id, tostring(e.key), tostring(e.timestamp))
            end
        end
    end
    local missing = 0
    for id in pairs(ref.closed) do
        if not seen[id] then
            missing = missing + 1
            if missing <= 3 then
                check(false, "%s: closed window %s never emitted", label, id)
            end
        end
    end
    check(#late_out == #ref.late, "%s: %d records on the late topic, expected %d", label, #late_out, #ref.late)
    for j = 1, math.min(#late_out, #ref.late) do
        local r = records[ref.late[j]]
        if not check(late_out[j].key == r.key and late_out[j].value == r.value, "%s: late record %d differs", label, j) then
            break
        end
    end
end

local REASONS = { decode = "cannot decode value", time = "missing or invalid event time", value = "record has no value" }

local function check_dead_letters(label, got, ref, from, to)
    from, to = from or 1, to or math.huge
    for idx, want in pairs(ref.dead) do
        if idx >= from and idx <= to then
            check(got[idx] and got[idx]:find(REASONS[want], 1, true), "%s: record %d: dead letter %s, expected '%s'", label, idx, tostring(got[idx]), REASONS[want])
        end
    end
    for idx in pairs(got) do
        check(ref.dead[idx], "%s: record %d dead-lettered (%s) but is good", label, idx, got[idx])
    end
end

-- After the last flush the state holds exactly the open windows, with their aggregates, and the
-- stream time of each partition.
local function check_state(label, state, ref, kind)
    local found = 0
    for p = 0, P - 1 do
        local s = state[p] or {}
        check(tonumber(s["win.time"]) == ref.st[p], "%s: partition %d stream time %s, expected %s", label, p, tostring(s["win.time"]), tostring(ref.st[p]))
        for name, value in pairs(s) do
            if name ~= "win.time" then
                local prefix, start, key = name:match("^(%a+)/(%-?%d+)/(.*)$")
                local w = ref.open[key .. "|" .. start]
                if check(w and w.p == p, "%s: state key %s of partition %d is not an open window", label, name, p) then
                    found = found + 1
                    if kind == "session" then
                        check(prefix == "ses" and value == w.stop .. "/" .. w.count, "%s: state %s = %s", label, name, value)
                    elseif kind == "hopping" then
                        local agg = json.decode(value)
                        check(prefix == "win" and agg.count == w.count and agg.sum == w.sum, "%s: state %s = %s", label, name, value)
                    else
                        check(prefix == "win" and value == tostring(w.count), "%s: state %s = %s", label, name, value)
                    end
                end
            end
        end
    end
    local open = 0
    for _ in pairs(ref.open) do
        open = open + 1
    end
    check(found == open, "%s: %d open windows in the state, expected %d", label, found, open)
end

local function fresh(src, state)
    local inst, ctx = mock.instance(src), mock.new_ctx(state)
    for p = 0, P - 1 do
        inst.restore(p, mock.copy(ctx.state[p] or {}), ctx)
    end
    return inst, ctx
end

local function serialized(emitted)
    local out = {}
    for i, e in ipairs(emitted) do
        out[i] = table.concat({ tostring(e.topic), e.key, e.value, tostring(e.timestamp) }, "|")
    end
    table.sort(out)
    return table.concat(out, "\n")
end

-- Close time of an emitted result, to check that nothing is emitted before it closes.
local function close_time(kind, v)
    if kind == "session" then
        return v.window_end + GAP + GRACE + 1
    end
    return v.window_end + GRACE
end

---------------------------------------------------------------------------------------------

local function suite(kind, src, ref, records)
    local n = #records
    local with_sum = kind == "hopping"

    -- 1. batches of random sizes
    local a, actx = fresh(src)
    mock.run_batches(a, actx, records, 1, n, 700)
    check_results(kind .. "/batch", actx.emitted, ref, records, with_sum)
    check_dead_letters(kind .. "/batch", actx.dead, ref)
    check(actx.metrics.late == #ref.late, "%s: late metric %s, expected %d", kind, tostring(actx.metrics.late), #ref.late)
    check_state(kind .. "/batch", actx.state, ref, kind)

    -- 2. one record at a time through process: same output; nothing emitted before it closes
    local b, bctx = fresh(src)
    local st = {}
    mock.run_each(b, bctx, records, 1, n, function(i, before)
        local r = records[i]
        if not r.bad and r.ts > (st[r.partition] or math.mininteger) then
            st[r.partition] = r.ts
        end
        for j = before + 1, #bctx.emitted do
            local e = bctx.emitted[j]
            if e.topic == nil then
                local v = json.decode(e.value)
                local p = partition_of(v.ad_id)
                check(close_time(kind, v) <= st[p], "%s/process: window %s emitted at stream time %d, before it closes", kind, window_id(v), st[p])
            end
        end
    end)
    check(serialized(bctx.emitted) == serialized(actx.emitted), "%s: process and process_batch outputs differ", kind)
    check_dead_letters(kind .. "/process", bctx.rejected, ref)

    -- 3. crash: snapshot the committed state halfway, go on a little (those outputs may have
    -- been sent), lose that, and replay from the snapshot in a fresh instance
    local half = n // 2
    local c, cctx = fresh(src)
    mock.run_batches(c, cctx, records, 1, half, 500)
    local snapshot, sent_before = mock.copy(cctx.state), #cctx.emitted
    mock.run_batches(c, cctx, records, half + 1, half + n // 5, 500)
    local d, dctx = fresh(src, mock.copy(snapshot))
    mock.run_batches(d, dctx, records, half + 1, n, 500)
    local committed_then_replayed = table.move(cctx.emitted, 1, sent_before, 1, {})
    table.move(dctx.emitted, 1, #dctx.emitted, #committed_then_replayed + 1, committed_then_replayed)
    check_results(kind .. "/crash", committed_then_replayed, ref, records, with_sum)
    local value_of = {}
    for _, list in ipairs({ cctx.emitted, dctx.emitted }) do
        for _, e in ipairs(list) do
            if e.topic == nil then
                local id = window_id(json.decode(e.value))
                check(value_of[id] == nil or value_of[id] == e.value, "%s/crash: window %s emitted with conflicting values %s and %s", kind, id, tostring(value_of[id]), e.value)
                value_of[id] = e.value
            end
        end
    end
    check_dead_letters(kind .. "/crash", dctx.dead, ref, half + 1, n)
    check_state(kind .. "/crash", dctx.state, ref, kind)

    -- 4. partition 2 moves to another instance halfway (flushed, revoked, restored there)
    local e, ectx = fresh(src)
    mock.run_batches(e, ectx, records, 1, half, 500)
    local moved = mock.copy(ectx.state[2])
    e.revoke(2, ectx)
    ectx.state[2] = nil
    local f, fctx = mock.instance(src), mock.new_ctx({ [2] = mock.copy(moved) })
    f.restore(2, mock.copy(moved), fctx)
    local rest_e, rest_f = {}, {}
    for i = half + 1, n do
        local list = records[i].partition == 2 and rest_f or rest_e
        list[#list + 1] = records[i]
    end
    mock.run_batches(e, ectx, rest_e, 1, #rest_e, 500)
    mock.run_batches(f, fctx, rest_f, 1, #rest_f, 500)
    local sent_by_f = false
    for _, x in ipairs(fctx.emitted) do
        sent_by_f = sent_by_f or x.topic == nil
        check(x.key == nil or partition_of(x.key) == 2, "%s/move: instance with partition 2 emitted key %s", kind, tostring(x.key))
    end
    check(sent_by_f, "%s/move: partition 2's new instance closed no window (%d records, %d outputs)", kind, #rest_f, #fctx.emitted)
    local all = table.move(ectx.emitted, 1, #ectx.emitted, 1, {})
    table.move(fctx.emitted, 1, #fctx.emitted, #all + 1, all)
    -- the late topic order interleaves two instances: compare it as a set here
    local late_want = {}
    for _, idx in ipairs(ref.late) do
        late_want[records[idx].value] = (late_want[records[idx].value] or 0) + 1
    end
    local without_late = {}
    for _, x in ipairs(all) do
        if x.topic == "clicks_late" then
            late_want[x.value] = (late_want[x.value] or 0) - 1
        else
            without_late[#without_late + 1] = x
        end
    end
    for value, count in pairs(late_want) do
        check(count == 0, "%s/move: late record %s forwarded %d times too few", kind, value, count)
    end
    check_results(kind .. "/move", without_late, { closed = ref.closed, open = ref.open, late = {} }, records, with_sum)
end

-- Hand-computed edge cases: exact close, late and gap boundaries (random data rarely hits them).
-- steps: { key, event time (= record timestamp), expected outputs after this record (list) }
local function edge_case(label, src, steps, late_expected)
    local inst, ctx = fresh(src)
    for i, step in ipairs(steps) do
        local before = #ctx.emitted
        ctx.base = i - 1
        inst.process({ key = step[1], value = "x", timestamp = step[2], partition = 0, offset = i, topic = "t" }, ctx)
        local got = {}
        for j = before + 1, #ctx.emitted do
            got[#got + 1] = ctx.emitted[j].value
        end
        check(table.concat(got, ",") == table.concat(step[3], ","), "%s: after record %d (%s@%d): got [%s], expected [%s]",
            label, i, step[1], step[2], table.concat(got, ","), table.concat(step[3], ","))
    end
    check((ctx.metrics.late or 0) == late_expected, "%s: %s late, expected %d", label, tostring(ctx.metrics.late), late_expected)
end

local function edge_cases()
    local RESULT = "result = function(k, start, stop, n) return k .. ':' .. start .. '-' .. stop .. '=' .. n end"
    edge_case("tumbling edges", "require('windows').tumbling { size = 1000, grace = 500, decode = false, " .. RESULT .. " }:install()", {
        { "a", 100, {} },
        { "b", 1499, {} },
        { "a", 999, {} }, -- stream time 1499 < end 1000 + grace 500: still on time
        { "b", 1500, { "a:0-1000=2" } }, -- stream time reaches end + grace: closes
        { "a", 999, {} }, -- late now
        { "a", -1, {} }, -- negative times align too ([-1000, 0)), and this is late
        { "c", 2999, { "b:1000-2000=2" } },
    }, 2)
    edge_case("hopping edges", "require('windows').hopping { size = 1000, advance = 500, grace = 0, decode = false, " .. RESULT .. " }:install()", {
        { "a", 700, {} }, -- windows [0,1000) and [500,1500)
        { "a", 1000, { "a:0-1000=1" } },
        { "a", 999, {} }, -- [0,1000) closed, [500,1500) open: counted there, not late
        { "a", 1500, { "a:500-1500=3" } },
        { "a", 999, {} }, -- both windows closed: late
    }, 1)
    edge_case("session edges", "require('windows').session { gap = 1000, grace = 0, decode = false, " .. RESULT .. " }:install()", {
        { "a", 0, {} },
        { "a", 1000, {} }, -- exactly gap apart: same session
        { "a", 2001, { "a:0-1000=2" } }, -- 1001 apart: a new session; stream time 2001 > last + gap + grace
        { "b", 2001, {} },
        { "a", 2000, {} }, -- late: 2000 + grace < stream time
        { "a", 3001, {} }, -- gap apart from 2001: same session
        { "b", 4002, { "a:2001-3001=2", "b:2001-2001=1" } },
    }, 1)
    edge_case("session bridge", "require('windows').session { gap = 1000, grace = 5000, decode = false, " .. RESULT .. " }:install()", {
        { "b", 0, {} },
        { "b", 2000, {} }, -- two sessions
        { "b", 1000, {} }, -- bridges them: merged
        { "b", 8000, {} },
        { "c", 8001, { "b:0-2000=3" } },
    }, 0)
end

local function run_tests()
    local started = os.clock()
    local records = generate(24000, 7)
    local refs = {
        tumbling = reference_time_windows(records, SIZE),
        hopping = reference_time_windows(records, ADVANCE),
        session = reference_sessions(records),
    }
    -- the data must actually exercise what the tests claim to check
    for kind, ref in pairs(refs) do
        local closed, hot = 0, 0
        for _, w in pairs(ref.closed) do
            closed = closed + 1
            if w.key == "hot" then
                hot = hot + 1
            end
        end
        check(closed > 100 and hot > 5 and #ref.late > 100, "%s: weak data (%d closed, %d hot, %d late)", kind, closed, hot, #ref.late)
    end
    local late_in_grace = 0 -- out of order by more than a second, yet counted
    local st = {}
    for _, r in ipairs(records) do
        if not r.bad then
            local s = st[r.partition] or math.mininteger
            if r.ts < s - 1500 and r.ts + GRACE >= s then
                late_in_grace = late_in_grace + 1
            end
            st[r.partition] = math.max(s, r.ts)
        end
    end
    check(late_in_grace > 500, "few out-of-order records within grace (%d)", late_in_grace)

    edge_cases()
    suite("tumbling", TUMBLING, refs.tumbling, records)
    suite("hopping", HOPPING, refs.hopping, records)
    suite("session", SESSION, refs.session, records)

    -- errors of the user's own functions are the record's failure too, not the batch's
    local inst, ctx = fresh([[
        require("windows").tumbling { size = 1000,
            add = function(n, ev) if ev.boom then error("boom") end return n + 1 end }:install()
    ]])
    local recs = {}
    for i = 1, 5 do
        recs[i] = { key = "k", value = i == 3 and '{"boom":true}' or "{}", timestamp = 1000 * i, partition = 0, offset = i, topic = "t" }
    end
    inst.process_batch(mock.batch(recs, 1, 5), ctx)
    check(ctx.dead[3] and ctx.dead[3]:find("boom"), "a failing add dead-letters its record: %s", tostring(ctx.dead[3]))
    check(#ctx.emitted == 3, "records around a failing one are processed (%d results)", #ctx.emitted)

    -- stream-time punctuation: per partition, when its stream time passes a multiple
    inst, ctx = fresh([[
        require("windows").tumbling { size = 1000 }:every_stream(10000, function(p, t, ctx)
            ctx.emit("punct", nil, p .. "@" .. t)
        end):install()
    ]])
    recs = {}
    for i, pt in ipairs({ { 0, 1000 }, { 0, 5000 }, { 0, 11000 }, { 1, 30000 }, { 0, 12000 },
                          { 0, 25000 }, { 1, 41000 }, { 0, 9000 } }) do
        recs[i] = { key = "k", value = "{}", timestamp = pt[2], partition = pt[1], offset = i, topic = "t" }
    end
    for i = 1, #recs do
        inst.process_batch(mock.batch(recs, i, i), ctx)
    end
    local fired = {}
    for _, e in ipairs(ctx.emitted) do
        if e.topic == "punct" then
            fired[#fired + 1] = e.value
        end
    end
    check(table.concat(fired, " ") == "0@11000 0@25000 1@41000",
          "stream-time punctuation fires per partition: %s", table.concat(fired, " "))

    mock.finish(string.format("test_windows (%.1f s)", os.clock() - started))
end

---------------------------------------------------------------------------------------------
-- Micro-benchmark: 1M clicks, 100 batches of 10,000, 4 partitions, 1000 ads with a hot one,
-- JSON decode included; only process_batch (and the flush after each batch) is timed.

local function bench()
    local inst, ctx = fresh(TUMBLING)
    ctx.emit = function() end
    ctx.put = function() end
    local clock, total, count = BASE, 0, 0
    math.randomseed(1)
    for _ = 1, 100 do
        local b = { n = 10000, key = {}, value = {}, timestamp = {}, partition = {}, offset = {}, topic = {} }
        for i = 1, 10000 do
            clock = clock + math.random(0, 2)
            local ad = math.random() < 0.3 and "a1" or ("a" .. math.random(1, 1000))
            local ts = clock - math.random(0, 2000)
            b.key[i], b.timestamp[i], b.partition[i], b.offset[i], b.topic[i] = ad, clock, i % 4, i, "clicks"
            b.value[i] = string.format('{"ad_id":"%s","user_id":"u%d","ts":%d}', ad, math.random(1, 100000), ts)
        end
        local t0 = os.clock()
        inst.process_batch(b, ctx)
        inst.flush(ctx)
        total = total + (os.clock() - t0)
        count = count + b.n
    end
    print(string.format("windows bench: %d clicks in %.3f s of CPU: %.0f records/s", count, total, count / total))
end

if arg[1] == "bench" then
    bench()
else
    run_tests()
end
