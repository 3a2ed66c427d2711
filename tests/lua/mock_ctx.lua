-- A stand-in for the host, for the library tests: a ctx that records what a processor does,
-- a loader that gives every instance fresh copies of the libraries (as a restarted process
-- would have), and batch helpers. Run the tests from the repository root.
local mock = {}

-- ctx with per-partition state tables and lists of everything emitted, dead-lettered and
-- rejected. `base` is the global index of the batch's first record minus one, set by the
-- runner, so that dead letters are recorded by global index.
function mock.new_ctx(state)
    local ctx = {
        emitted = {}, -- { topic, key, value, timestamp }
        dead = {}, -- global index -> reason (process_batch)
        rejected = {}, -- global index -> reason (process)
        metrics = {},
        logs = {},
        state = state or {}, -- partition -> key -> value
        base = 0,
        config = {}, instance = 0, instances = 1,
    }
    function ctx.emit(topic, key, value, headers, timestamp)
        assert(value == nil or type(value) == "string", "emit: value must be a string")
        ctx.emitted[#ctx.emitted + 1] = { topic = topic, key = key, value = value, timestamp = timestamp }
    end
    function ctx.get(key, p)
        local s = ctx.state[p]
        return s and s[key]
    end
    function ctx.put(key, value, p)
        assert(type(key) == "string", "put: key must be a string")
        assert(value == nil or type(value) == "string", "put: value must be a string or nil")
        assert(p ~= nil, "put: no partition")
        local s = ctx.state[p]
        if not s then
            s = {}
            ctx.state[p] = s
        end
        s[key] = value
    end
    function ctx.dead_letter(i, reason)
        ctx.dead[ctx.base + i] = reason
    end
    function ctx.reject(reason)
        ctx.rejected[ctx.base + 1] = reason
    end
    function ctx.metric(name, delta)
        ctx.metrics[name] = (ctx.metrics[name] or 0) + delta
    end
    function ctx.log(msg)
        ctx.logs[#ctx.logs + 1] = msg
    end
    return ctx
end

function mock.copy(v)
    if type(v) ~= "table" then
        return v
    end
    local c = {}
    for k, x in pairs(v) do
        c[k] = mock.copy(x)
    end
    return c
end

-- Loads a processor script as the host would: its own global environment, `json` global, and
-- a `require` that runs scripts/<name>.lua afresh in that environment (no module state shared
-- between instances). Returns the environment, where the script's globals are.
function mock.instance(source)
    local env = setmetatable({ json = json }, { __index = _G })
    local loaded = {}
    env.require = function(name)
        if loaded[name] == nil then
            local chunk = assert(loadfile("scripts/" .. name .. ".lua", "t", env))
            loaded[name] = chunk(name)
        end
        return loaded[name]
    end
    assert(load(source, "=script", "t", env))()
    return env
end

-- Columnar batch of records[from..to]; a record is { key, value, timestamp, partition, offset, topic }.
function mock.batch(records, from, to)
    local b = { n = to - from + 1, key = {}, value = {}, timestamp = {}, partition = {}, offset = {}, topic = {} }
    for i = from, to do
        local r, j = records[i], i - from + 1
        b.key[j], b.value[j], b.timestamp[j] = r.key, r.value, r.timestamp
        b.partition[j], b.offset[j], b.topic[j] = r.partition, r.offset, r.topic
    end
    return b
end

-- Feeds records[from..to] to an instance in batches of random sizes (1..max_batch), calling
-- flush after each batch, as the host does before a commit. after(pos) runs after each batch.
function mock.run_batches(inst, ctx, records, from, to, max_batch, after)
    local i = from
    while i <= to do
        local last = math.min(to, i + math.random(1, max_batch) - 1)
        ctx.base = i - 1
        inst.process_batch(mock.batch(records, i, last), ctx)
        inst.flush(ctx)
        if after then
            after(last)
        end
        i = last + 1
    end
end

-- Feeds records[from..to] one by one through process; after(pos, emitted_before) runs after each.
function mock.run_each(inst, ctx, records, from, to, after)
    for i = from, to do
        local before = #ctx.emitted
        ctx.base = i - 1
        inst.process(records[i], ctx)
        if i % 50 == 0 then
            inst.flush(ctx)
        end
        if after then
            after(i, before)
        end
    end
    inst.flush(ctx)
end

local failures = 0

function mock.check(cond, fmt, ...)
    if not cond then
        failures = failures + 1
        io.stderr:write("FAIL: " .. string.format(fmt, ...) .. "\n")
        if failures >= 20 then
            io.stderr:write("too many failures\n")
            os.exit(1)
        end
    end
    return cond
end

function mock.finish(name)
    if failures > 0 then
        io.stderr:write(name .. ": " .. failures .. " failure(s)\n")
        os.exit(1)
    end
    print(name .. ": all checks passed")
end

return mock
