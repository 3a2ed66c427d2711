-- stream_common: what the windows and joins libraries share, kept in one place: event-time
-- and option checks, the record drivers (process_batch, process) with dead-lettering, and the
-- processor methods installed as the host's globals. Not meant for scripts of their own.
--
-- A processor class using it provides ingest(self, batch, ctx, first), which first sets the
-- library's index of the record at hand to first - 1 and then to each record's as it goes,
-- cursor() returning that index, after_batch(self, ctx), explain(self, batch, i, err) and
-- new_partition(); common.mixin adds the shared methods to the class.

local math_type, floor = math.type, math.floor
local pairs, ipairs, type, tostring, tonumber = pairs, ipairs, type, tostring, tonumber
local pcall, error = pcall, error

local MIN_TIME = math.mininteger

local common = {}

-- JSON numbers decode as floats, so most event times arrive here; accept integral numbers
-- and numeric strings, truncating fractions of a millisecond.
function common.to_event_time(t, what)
    if type(t) == "string" then
        t = tonumber(t)
    end
    if type(t) == "number" then
        local ms = floor(t)
        if math_type(ms) == "integer" then
            return ms
        end
    end
    error("missing or invalid event time (" .. what .. ")", 0)
end

-- lib names the library in the message. Level 3: the caller of the library function that
-- checks its option, as when each library had its own copy.
function common.non_negative_integer(v, name, lib)
    if v == nil then
        return 0
    end
    if math_type(v) ~= "integer" or v < 0 then
        error(lib .. ": " .. name .. " must be an integer >= 0 (ms), got " .. tostring(v), 3)
    end
    return v
end

-- Reads the `time` option into self.time_field or self.time_of, and self.time_what (for error
-- messages). False when it is neither a field name, a function nor nil: the caller raises the
-- error, in its own words and at its own level.
function common.time_option(self, time)
    if type(time) == "string" then
        self.time_field, self.time_what = time, "field '" .. time .. "'"
    elseif type(time) == "function" then
        self.time_of, self.time_what = time, "time function"
    elseif time == nil then
        self.time_what = "record timestamp"
    else
        return false
    end
    return true
end

-- What is wrong with a record's value, if anything, for the dead-letter topic: it is decoded
-- again (decoding is deterministic) to tell a bad value from a failure further on. Nil when
-- the value is fine.
function common.value_fault(decode, value, time_field)
    local ok, ev = pcall(decode, value)
    if not ok then
        return "cannot decode value: " .. tostring(ev)
    end
    if time_field and type(ev) ~= "table" then
        return "value is not an object, so it has no field '" .. time_field .. "'"
    end
end

-- A tick function running fn(now_ms, ctx) at most every `ms` of wall clock (first at the
-- first tick). The caller checks ms.
function common.punctuator(ms, fn)
    local due = MIN_TIME
    return function(now, ctx)
        if now >= due then
            due = now + ms
            fn(now, ctx)
        end
    end
end

-- The fields every processor has: per-partition state, punctuators, and a batch of one,
-- reused, so that process and process_batch share one path.
function common.init(self)
    self.parts, self.punctuators = {}, {}
    self.one = { n = 1, key = {}, value = {}, timestamp = {}, partition = {}, offset = {}, topic = {} }
    return self
end

---------------------------------------------------------------------------------------------
-- Processor methods

local methods = {}

function methods:partition_state(p)
    local ps = self.new_partition()
    self.parts[p] = ps
    return ps
end

-- A failing record is dead-lettered and the batch goes on from the next one (pcall per
-- failure, not per record).
function methods:process_batch(batch, ctx)
    local first = 1
    while first <= batch.n do
        local ok, err = pcall(self.ingest, self, batch, ctx, first)
        if ok then
            break
        end
        local i = self.cursor()
        if i < first then
            error(err, 0) -- not a record's fault
        end
        ctx.dead_letter(i, self:explain(batch, i, err))
        first = i + 1
    end
    self:after_batch(ctx)
end

function methods:process(record, ctx)
    local one = self.one
    one.key[1], one.value[1], one.timestamp[1] = record.key, record.value, record.timestamp
    one.partition[1], one.offset[1], one.topic[1] = record.partition, record.offset, record.topic
    local ok, err = pcall(self.ingest, self, one, ctx, 1)
    if not ok then
        if self.cursor() ~= 1 then
            error(err, 0)
        end
        local reason = self:explain(one, 1, err)
        if ctx.reject then
            ctx.reject(reason)
        else
            error(reason, 0)
        end
    end
    self:after_batch(ctx)
end

function methods:revoke(p, ctx)
    self.parts[p] = nil
end

function methods:tick(now, ctx)
    for _, run in ipairs(self.punctuators) do
        run(now, ctx)
    end
end

-- Defines the globals the host calls (in env, default the environment this library was loaded
-- in: require loads every library in the script's own environment, so that is the script's).
function methods:install(env)
    env = env or _ENV
    env.process_batch = function(batch, ctx) return self:process_batch(batch, ctx) end
    env.process = function(record, ctx) return self:process(record, ctx) end
    env.flush = function(ctx) return self:flush(ctx) end
    env.restore = function(p, entries, ctx) return self:restore(p, entries, ctx) end
    env.revoke = function(p, ctx) return self:revoke(p, ctx) end
    env.tick = function(now, ctx) return self:tick(now, ctx) end
    return self
end

-- Copies the methods into the class itself rather than chaining metatables, so that a method
-- call costs no more lookups than before.
function common.mixin(class)
    for name, f in pairs(methods) do
        class[name] = f
    end
    return class
end

return common
