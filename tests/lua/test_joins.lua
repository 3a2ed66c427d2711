-- Tests of scripts/joins.lua against brute-force references computed here from the generated
-- records (values are read back with string patterns, not with the library's decoding).
-- Run from the repository root: lua5.4 tests/lua/test_joins.lua
package.path = "scripts/?.lua;tests/lua/?.lua;" .. package.path
json = require("cjson")
local mock = require("mock_ctx")
local check = mock.check

local P = 2

local function partition_of(key)
    return tonumber(key:sub(2)) % P
end

local function serialized(list)
    local out = {}
    for i, e in ipairs(list) do
        out[i] = table.concat({ tostring(e.topic), tostring(e.key), e.value, tostring(e.timestamp) }, "|")
    end
    return out
end

local function same_list(label, got, want)
    local g, w = serialized(got), serialized(want)
    check(#g == #w, "%s: %d outputs, expected %d", label, #g, #w)
    for i = 1, math.min(#g, #w) do
        if not check(g[i] == w[i], "%s: output %d is %s, expected %s", label, i, g[i], w[i]) then
            return
        end
    end
end

local function fresh(src, state)
    local inst, ctx = mock.instance(src), mock.new_ctx(state)
    for p = 0, P - 1 do
        inst.restore(p, mock.copy(ctx.state[p] or {}), ctx)
    end
    return inst, ctx
end

-- Runs the input in batches; halfway it snapshots the committed state, goes on a little (its
-- outputs count as sent), then a fresh instance restores the snapshot and replays the rest.
-- Returns the outputs of the committed part plus the replay, and both contexts.
local function crash_run(src, records, max_batch)
    local n, half = #records, #records // 2
    local a, actx = fresh(src)
    mock.run_batches(a, actx, records, 1, half, max_batch)
    local snapshot, sent_before = mock.copy(actx.state), #actx.emitted
    mock.run_batches(a, actx, records, half + 1, math.min(n, half + n // 5), max_batch)
    local b, bctx = fresh(src, mock.copy(snapshot))
    mock.run_batches(b, bctx, records, half + 1, n, max_batch)
    local out = table.move(actx.emitted, 1, sent_before, 1, {})
    table.move(bctx.emitted, 1, #bctx.emitted, #out + 1, out)
    return out, actx, bctx
end

---------------------------------------------------------------------------------------------
-- Stream-table

local INNER = [[
require("joins").stream_table {
    stream = "clicks", table = "ads",
    join = function(click, ad, key) return click .. "=>" .. ad end,
}:install()
]]

local LEFT = [[
require("joins").stream_table {
    stream = "clicks", table = "ads", left = true, decode = true,
    join = function(click, ad, key)
        return string.format("%d=>%s", click.c, ad and ad.name or "-"), "out-" .. tostring(key)
    end,
}:install()
]]

local function generate_stream_table(n, seed)
    math.randomseed(seed)
    local records, offsets = {}, { [0] = 0, 0 }
    for i = 1, n do
        local key = "a" .. math.random(1, 30)
        local p = partition_of(key)
        local r = { key = key, partition = p, timestamp = 1000 * i }
        local u = math.random()
        if u < 0.3 then
            r.topic = "ads"
            local v = math.random()
            if v < 0.15 then
                r.value = nil -- tombstone
            elseif v < 0.17 then
                r.value = '{"name":' -- bad JSON: a row for the raw join, a dead letter when decoding
            else
                r.value = string.format('{"name":"%s-v%d"}', key, i)
            end
        else
            r.topic = math.random() < 0.05 and "clicks.retry.1" or "clicks"
            r.value = string.format('{"c":%d}', i)
            if math.random() < 0.02 then
                r.key = nil
            end
        end
        if i % 1500 == 0 then
            r.topic = "elsewhere" -- not a topic of this join: dead-lettered
        end
        r.offset = offsets[p]
        offsets[p] = offsets[p] + 1
        records[i] = r
    end
    return records
end

-- Processing order is arrival order: the row a click sees is the last table record of its key
-- before it. decoded: the LEFT script's view (bad JSON dead-lettered, rows read by name).
local function reference_stream_table(records, decoded)
    local rows, out, unmatched, dead = {}, {}, 0, {}
    for i, r in ipairs(records) do
        if r.topic == "ads" then
            if decoded and r.value and not r.value:match('^{"name":"[^"]*"}$') then
                dead[i] = true
            else
                rows[r.key] = r.value
            end
        elseif r.topic == "clicks" or r.topic == "clicks.retry.1" then
            local row = r.key and rows[r.key]
            if not decoded then
                if row then
                    out[#out + 1] = { key = r.key, value = r.value .. "=>" .. row, timestamp = r.timestamp }
                else
                    unmatched = unmatched + 1
                end
            else
                local name = row and row:match('"name":"([^"]*)"') or "-"
                out[#out + 1] = { key = "out-" .. tostring(r.key), value = r.value:match('"c":(%d+)') .. "=>" .. name, timestamp = r.timestamp }
            end
        else
            dead[i] = true
        end
    end
    return { out = out, unmatched = unmatched, dead = dead }
end

local function check_dead(label, got, want, from)
    for i in pairs(want) do
        check(i < (from or 1) or got[i], "%s: record %d not dead-lettered", label, i)
    end
    for i, reason in pairs(got) do
        check(want[i], "%s: record %d dead-lettered: %s", label, i, reason)
    end
end

local function test_stream_table()
    local records = generate_stream_table(6000, 3)
    for _, variant in ipairs({ { "inner", INNER, false }, { "left", LEFT, true } }) do
        local name, src, decoded = variant[1], variant[2], variant[3]
        local ref = reference_stream_table(records, decoded)
        check(#ref.out > 1000 and (decoded or ref.unmatched > 300), "stream_table %s: weak data", name)

        local a, actx = fresh(src)
        mock.run_batches(a, actx, records, 1, #records, 400)
        same_list("stream_table " .. name .. "/batch", actx.emitted, ref.out)
        check(decoded or actx.metrics.unmatched == ref.unmatched, "stream_table %s: unmatched %s, expected %d", name, tostring(actx.metrics.unmatched), ref.unmatched)
        check_dead("stream_table " .. name .. "/batch", actx.dead, ref.dead)

        local b, bctx = fresh(src)
        mock.run_each(b, bctx, records, 1, #records)
        same_list("stream_table " .. name .. "/process", bctx.emitted, ref.out)
        check_dead("stream_table " .. name .. "/process", bctx.rejected, ref.dead)

        -- the state holds the current rows, so a restarted instance joins as before
        local out, _, cctx = crash_run(src, records, 300)
        same_list("stream_table " .. name .. "/crash", out, ref.out)
        local rows = {}
        for _, r in ipairs(records) do
            if r.topic == "ads" and not (decoded and r.value and not r.value:match('^{"name":"[^"]*"}$')) then
                rows[r.key] = r.value
            end
        end
        for key, value in pairs(rows) do
            check(cctx.state[partition_of(key)]["tbl/" .. key] == value, "stream_table %s: state of %s", name, key)
        end
        for p = 0, P - 1 do
            for k in pairs(cctx.state[p] or {}) do
                check(rows[k:sub(5)] ~= nil, "stream_table %s: state key %s of a deleted row", name, k)
            end
        end
    end
end

---------------------------------------------------------------------------------------------
-- Stream-stream

local WITHIN, GRACE = 3000, 1000

local STREAM_STREAM = [[
require("joins").stream_stream {
    left = "impressions", right = "clicks", within = 3000, grace = 1000, time = "ts",
    join = function(imp, click, key) return imp.id .. "+" .. click.id end,
}:install()
]]

local function generate_stream_stream(n, seed)
    math.randomseed(seed)
    local clock, records, offsets = { [0] = 1700000000000, 1700000600000 }, {}, { [0] = 0, 0 }
    for i = 1, n do
        local key = "k" .. math.random(1, 12)
        local p = partition_of(key)
        clock[p] = clock[p] + math.random(0, 200)
        local u, delay = math.random(), 0
        if u < 0.90 then
            delay = math.random(0, 800)
        elseif u < 0.97 then
            delay = math.random(800, 1000)
        else
            delay = math.random(2000, 8000)
        end
        local left = math.random() < 0.5
        local r = { key = key, partition = p, timestamp = clock[p], topic = left and "impressions" or "clicks",
                    left = left, ts = clock[p] - delay, id = (left and "L" or "R") .. i }
        local b = math.random()
        if b < 0.003 then
            r.value, r.bad = string.format('{"id":"%s"}', r.id), true
        elseif b < 0.006 then
            r.value, r.bad = "not json", true
        elseif b < 0.01 then
            r.key, r.skip = nil, true
            r.value = string.format('{"id":"%s","ts":%d}', r.id, r.ts)
        else
            r.value = string.format('{"id":"%s","ts":%d}', r.id, r.ts)
        end
        r.offset = offsets[p]
        offsets[p] = offsets[p] + 1
        records[i] = r
    end
    return records
end

-- Late: t + GRACE < the partition's stream time so far. Every pair of on-time records of the
-- same key, one from each side, at most WITHIN apart, joins once.
local function reference_stream_stream(records)
    local st, kept, dead, late = {}, {}, {}, 0
    for i, r in ipairs(records) do
        if r.bad then
            dead[i] = true
        elseif not r.skip then
            local s = st[r.partition] or math.mininteger
            if r.ts + GRACE < s then
                late = late + 1
            else
                kept[#kept + 1] = r
            end
            st[r.partition] = math.max(s, r.ts)
        end
    end
    local pairs_ = {}
    for _, l in ipairs(kept) do
        if l.left then
            for _, r in ipairs(kept) do
                if not r.left and r.key == l.key and math.abs(l.ts - r.ts) <= WITHIN then
                    pairs_[l.id .. "+" .. r.id] = math.max(l.ts, r.ts)
                end
            end
        end
    end
    return { pairs = pairs_, dead = dead, late = late, st = st, kept = kept }
end

local function check_pairs(label, emitted, ref)
    local seen, count = {}, 0
    for _, e in ipairs(emitted) do
        check(not seen[e.value], "%s: pair %s emitted twice", label, e.value)
        seen[e.value] = true
        check(ref.pairs[e.value] == e.timestamp, "%s: pair %s (timestamp %s) should not join", label, e.value, tostring(e.timestamp))
    end
    for pair in pairs(ref.pairs) do
        count = count + 1
        check(seen[pair], "%s: pair %s never emitted", label, pair)
    end
    return count
end

local function test_stream_stream()
    local records = generate_stream_stream(8000, 11)
    local ref = reference_stream_stream(records)

    local a, actx = fresh(STREAM_STREAM)
    mock.run_batches(a, actx, records, 1, #records, 400)
    local count = check_pairs("stream_stream/batch", actx.emitted, ref)
    check(count > 2000 and ref.late > 50, "stream_stream: weak data (%d pairs, %d late)", count, ref.late)
    check(actx.metrics.late == ref.late, "stream_stream: late %s, expected %d", tostring(actx.metrics.late), ref.late)
    check_dead("stream_stream/batch", actx.dead, ref.dead)

    local b, bctx = fresh(STREAM_STREAM)
    mock.run_each(b, bctx, records, 1, #records)
    check_pairs("stream_stream/process", bctx.emitted, ref)
    check_dead("stream_stream/process", bctx.rejected, ref.dead)

    local out, _, cctx = crash_run(STREAM_STREAM, records, 300)
    check_pairs("stream_stream/crash", out, ref)

    -- expired records leave the state (purged every max(within, 1 s) of stream time)
    local buffered = 0
    for p = 0, P - 1 do
        local s = cctx.state[p]
        check(tonumber(s["ssj.time"]) == ref.st[p], "stream_stream: partition %d stream time", p)
        for k, v in pairs(s) do
            local t = k:match("^ssj/") and tonumber(v:match("^(%-?%d+)/"))
            if t then
                buffered = buffered + 1
                check(t + WITHIN + GRACE + WITHIN >= ref.st[p], "stream_stream: state %s of partition %d outlived its window", k, p)
            end
        end
    end
    local live = 0
    for _, r in ipairs(ref.kept) do
        if r.ts + WITHIN + GRACE >= ref.st[r.partition] then
            live = live + 1
        end
    end
    check(buffered >= live and buffered < live + 200, "stream_stream: %d records in the state, %d still joinable", buffered, live)
end

-- Hand-computed boundaries: exactly `within` apart joins, one more does not; a record at the
-- stream time is on time with grace 0, one before it is late.
local function test_stream_stream_edges()
    local inst, ctx = fresh([[
        require("joins").stream_stream { left = "l", right = "r", within = 1000,
            join = function(a, b) return a .. "+" .. b end }:install()
    ]])
    local steps = {
        { "l", "L1", 1000, {} },
        { "r", "R2", 2000, { "L1+R2" } }, -- exactly within apart
        { "r", "R3", 2001, {} }, -- 1001 from L1
        { "l", "L4", 2001, { "L4+R2", "L4+R3" } }, -- at the stream time: on time
        { "l", "L5", 2000, {} }, -- before the stream time, grace 0: late
    }
    for i, step in ipairs(steps) do
        local before = #ctx.emitted
        inst.process({ key = "k1", topic = step[1], value = step[2], timestamp = step[3], partition = 1, offset = i }, ctx)
        local got = {}
        for j = before + 1, #ctx.emitted do
            got[#got + 1] = ctx.emitted[j].value
        end
        check(table.concat(got, ",") == table.concat(step[4], ","), "stream_stream edges: after %s: [%s], expected [%s]",
            step[2], table.concat(got, ","), table.concat(step[4], ","))
    end
    check(ctx.metrics.late == 1, "stream_stream edges: late %s, expected 1", tostring(ctx.metrics.late))

    -- the later record arriving first
    inst, ctx = fresh([[
        require("joins").stream_stream { left = "l", right = "r", within = 1000, grace = 5000,
            join = function(a, b) return a .. "+" .. b end }:install()
    ]])
    inst.process({ key = "k1", topic = "l", value = "L6", timestamp = 5000, partition = 1, offset = 1 }, ctx)
    inst.process({ key = "k1", topic = "r", value = "R7", timestamp = 4000, partition = 1, offset = 1 }, ctx)
    inst.process({ key = "k1", topic = "r", value = "R8", timestamp = 3999, partition = 1, offset = 2 }, ctx)
    check(#ctx.emitted == 1 and ctx.emitted[1].value == "L6+R7" and ctx.emitted[1].timestamp == 5000,
        "stream_stream edges: a partner exactly within earlier joins, one more does not")
end

test_stream_table()
test_stream_stream()
test_stream_stream_edges()
mock.finish("test_joins")
