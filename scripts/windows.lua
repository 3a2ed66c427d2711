-- windows: windowed aggregations (tumbling, hopping, session) for Lua processors. The user
-- writes the aggregation; this library does the windowing, lateness, state and restarts.
--
--   local windows = require("windows")
--   windows.tumbling {
--       size = 60000, grace = 5000,
--       time = "ts",                              -- event time: a field, a function(ev, rec_ts), or
--                                                 -- nil for the record timestamp
--       init = function() return 0 end,
--       add = function(count, click) return count + 1 end,
--       result = function(ad, start, stop, count)
--           return json.encode { ad_id = ad, window_start = start, window_end = stop, count = count }
--       end,
--       late_topic = "clicks_late",               -- optional
--   }:install()                                   -- defines process_batch, process, flush,
--                                                 -- restore, revoke and tick
--
-- Constructors: windows.tumbling{size, grace}, windows.hopping{size, advance, grace} and
-- windows.session{gap, grace, merge}. Options (all optional):
--   decode(value) -> event           default json.decode; false passes the value string as is
--   key(event, record_key) -> key    group key, default the record key (made a string)
--   time                             field name, function(event, record_ts), or nil (record ts)
--   init(key) -> agg                 default 0
--   add(agg, event, key) -> agg      default agg + 1 (a count)
--   merge(a, b, key) -> agg          sessions only: a record bridged two sessions; default a + b
--   result(key, start, stop, agg) -> value [, out_key]   nil value: nothing emitted
--   output                           topic of the results, default the stage's first output
--   late_topic                       where late records go unchanged (else only counted)
--   encode_agg(agg) / decode_agg(s)  state codec; default: numbers as text, tables as JSON
--
-- Semantics:
--   * Stream time is the largest event time seen so far in an input partition, kept per
--     partition so that a partition read further ahead never makes another one's records late.
--   * Time windows are [start, start + size), start a multiple of `advance` (tumbling:
--     `size`) counted from the epoch, so one-minute windows align to the minute. A window closes
--     when its partition's stream time >= end + grace: its results are emitted then, once per
--     key, with timestamp = end, and its state is deleted.
--   * Hopping: a record goes to every window covering it. Windows already closed skip it; if
--     all of them are closed the record is late.
--   * Session windows: records of a key at most `gap` apart are one session; result's start
--     and stop are the first and last event times, and the output timestamp is the last. A
--     session closes when stream time > last + gap + grace. A record is late when its time is
--     < stream time - grace (it could otherwise join a session already emitted).
--   * A late record is counted (metric "late") and sent unchanged to late_topic if set.
--   * A record that cannot be decoded, has no valid event time or no key goes to the
--     dead-letter topic with the reason (ctx.dead_letter in process_batch, ctx.reject in
--     process); the other records of the batch go on.
--   * Windows close on stream time only: a partition that receives nothing keeps its last
--     windows open. Results are deterministic for a given state and input order, so a replay
--     after a crash re-emits the same values.
--
-- State (per input partition, written at flush, only what changed):
--   "win.time"               stream time of the partition (decimal ms)
--   "win/<start>/<key>"      aggregate of a time window of a key
--   "ses/<start>/<key>"      "<last>/<aggregate>" of a session of a key
-- Other keys in the partition's state are left alone (the user may keep their own there).
--
-- Punctuation: processor:every(ms, fn) runs fn(now_ms, ctx) from tick at most every ms of wall
-- clock; windows.every(ms, fn) makes such a tick function for a script that defines its own.
-- processor:every_stream(ms, fn) runs fn(partition, stream_time, ctx) when a partition's stream
-- time passes a multiple of ms.
--
-- Needs stream_common.lua (the helpers shared with joins) where require finds it.

local common = require("stream_common")
local to_event_time, non_negative_integer = common.to_event_time, common.non_negative_integer
local math_type, tointeger = math.type, math.tointeger
local sort, remove, insert = table.sort, table.remove, table.insert
local format = string.format
local pairs, ipairs, type, tostring, tonumber = pairs, ipairs, type, tostring, tonumber
local error, setmetatable, next = error, setmetatable, next

local MIN_TIME, MAX_TIME = math.mininteger, math.maxinteger
local TIME_KEY = "win.time"

local windows = {}

-- Index in the batch of the record being ingested; read (through cursor, by the drivers in
-- stream_common) when it raises an error so that only that record is dead-lettered. A plain
-- upvalue, cheapest to set per record: ingestion never nests.
local current_index = 0
local function cursor() return current_index end

---------------------------------------------------------------------------------------------
-- Helpers

local function to_group_key(k)
    local kind = type(k)
    if kind == "number" or kind == "boolean" then
        return tostring(k)
    end
    if kind == "nil" then
        error("record has no key", 0)
    end
    error("group key must be a string or a number, not a " .. kind, 0)
end

-- JSON restores integral numbers as floats; turn them back into integers so that an aggregate
-- prints the same (tostring) before and after a restart.
local function integers_back(v)
    if type(v) == "table" then
        for k, x in pairs(v) do
            v[k] = integers_back(x)
        end
    elseif math_type(v) == "float" then
        return tointeger(v) or v
    end
    return v
end

local function encode_agg_default(agg)
    local kind = math_type(agg)
    if kind == "integer" then
        return tostring(agg)
    elseif kind == "float" then
        local s = format("%.17g", agg)
        if not s:find("[.eni]") then
            s = s .. ".0" -- keep it a float when read back
        end
        return s
    end
    return json.encode(agg)
end

local function decode_agg_default(s)
    local n = tonumber(s)
    if n ~= nil then
        return n
    end
    return integers_back(json.decode(s))
end

local function identity(v)
    return v
end

local function positive_integer(v, name)
    if math_type(v) ~= "integer" or v <= 0 then
        error("windows: " .. name .. " must be a positive integer (ms), got " .. tostring(v), 3)
    end
    return v
end

local function sorted_keys(t)
    local keys, n = {}, 0
    for k in pairs(t) do
        n = n + 1
        keys[n] = k
    end
    sort(keys)
    return keys
end

-- Binary min-heap of sessions ordered by the close time they were queued with.
local function heap_push(heap, item)
    local i = #heap + 1
    heap[i] = item
    while i > 1 do
        local parent = i // 2
        if heap[parent].queued_close <= item.queued_close then
            break
        end
        heap[i], heap[parent] = heap[parent], item
        i = parent
    end
end

local function heap_pop(heap)
    local top, n = heap[1], #heap
    local last = heap[n]
    heap[n] = nil
    n = n - 1
    if n > 0 then
        local i = 1
        while true do
            local child = 2 * i
            if child > n then
                break
            end
            if child < n and heap[child + 1].queued_close < heap[child].queued_close then
                child = child + 1
            end
            if last.queued_close <= heap[child].queued_close then
                break
            end
            heap[i] = heap[child]
            i = child
        end
        heap[i] = last
    end
    return top
end

---------------------------------------------------------------------------------------------
-- Time windows (tumbling, hopping)

local function open_window(self, ps, start)
    local win = { aggs = {}, dirty = {}, persisted = false }
    ps.windows[start] = win
    local close = start + self.close_after
    if close < ps.next_close then
        ps.next_close = close
    end
    return win
end

-- Makes the function adding an event to every still-open window covering t (false when all
-- of them are closed). A closure per processor: its settings are upvalues, cheaper to read
-- per record than fields.
local function window_placer(self)
    local close_after, advance, size = self.close_after, self.advance, self.size
    local init, add = self.init, self.add
    return function(self, ps, k, t, ev)
        local st = ps.time
        local placed = false
        local start = t - t % advance -- newest window covering t
        local oldest = t - size -- windows starting at or before this end before t
        while start > oldest do
            if start + close_after > st then
                local win = ps.windows[start] or open_window(self, ps, start)
                local aggs = win.aggs
                local agg = aggs[k]
                if agg == nil then
                    agg = init(k)
                end
                aggs[k] = add(agg, ev, k)
                win.dirty[k] = true
                placed = true
            end
            start = start - advance
        end
        return placed
    end
end

local function emit_results(self, ctx, key, start, stop, agg)
    local value, out_key = self.result(key, start, stop, agg)
    if value ~= nil then
        ctx.emit(self.output, out_key or key, value, nil, stop)
    end
end

local function close_windows(self, ps, ctx)
    local st = ps.time
    if st < ps.next_close then
        return
    end
    local close_after = self.close_after
    local due, next_close = {}, MAX_TIME
    for start in pairs(ps.windows) do
        local close = start + close_after
        if close <= st then
            due[#due + 1] = start
        elseif close < next_close then
            next_close = close
        end
    end
    ps.next_close = next_close
    sort(due) -- oldest first, keys sorted: the same order on every run
    for _, start in ipairs(due) do
        local win = ps.windows[start]
        ps.windows[start] = nil
        local aggs = win.aggs
        for _, k in ipairs(sorted_keys(aggs)) do
            emit_results(self, ctx, k, start, start + self.size, aggs[k])
        end
        if win.persisted then
            ps.closed[#ps.closed + 1] = start
            ps.closed[#ps.closed + 1] = win
        end
    end
    ctx.metric("windows_closed", #due)
end

local function flush_windows(self, ps, p, ctx)
    local put, encode = ctx.put, self.encode_agg
    local closed = ps.closed
    for j = 1, #closed, 2 do
        local prefix = "win/" .. closed[j] .. "/"
        for k in pairs(closed[j + 1].aggs) do
            put(prefix .. k, nil, p)
        end
    end
    if #closed > 0 then
        ps.closed = {}
    end
    for start, win in pairs(ps.windows) do
        local dirty = win.dirty
        if next(dirty) ~= nil then
            local prefix, aggs = "win/" .. start .. "/", win.aggs
            for k in pairs(dirty) do
                put(prefix .. k, encode(aggs[k]), p)
                dirty[k] = nil -- clearing fields during traversal is allowed
            end
            win.persisted = true
        end
    end
end

local function new_windows_partition()
    return { time = MIN_TIME, time_dirty = false, windows = {}, next_close = MAX_TIME, closed = {} }
end

local function restore_windows(self, ps, entries)
    local decode = self.decode_agg
    for name, value in pairs(entries) do
        local start, k = name:match("^win/(%-?%d+)/(.*)$")
        start = start and tointeger(tonumber(start))
        if start then
            local win = ps.windows[start] or open_window(self, ps, start)
            win.aggs[k] = decode(value)
            win.persisted = true
        end
    end
end

---------------------------------------------------------------------------------------------
-- Session windows

local function session_close_time(self, s)
    return s.last + self.gap + self.grace + 1 -- closes once stream time > last + gap + grace
end

-- Folds the event into the key's session within gap of t (merging the sessions it bridges)
-- or starts a new one; false when the record is late.
local function place_in_session(self, ps, k, t, ev)
    if t + self.grace < ps.time then
        return false
    end
    local gap = self.gap
    local list = ps.sessions[k]
    if list == nil then
        list = {}
        ps.sessions[k] = list
    end
    -- list holds the key's open sessions sorted by start, disjoint and more than gap apart
    local into
    local j = 1
    while j <= #list do
        local s = list[j]
        if s.start > t + gap then
            break
        end
        if s.last + gap >= t then
            if into == nil then
                into = s
                j = j + 1
            else
                -- t bridges `into` and the later session s: s becomes part of `into`
                into.agg = self.merge(into.agg, s.agg, k)
                if s.last > into.last then
                    into.last = s.last
                end
                s.gone = true
                ps.dirty[s] = nil
                if s.saved_start then
                    ps.deletes[#ps.deletes + 1] = s
                end
                remove(list, j)
            end
        else
            j = j + 1
        end
    end
    if into == nil then
        into = { key = k, start = t, last = t, agg = self.init(k), queued_close = 0 }
        local at = #list + 1
        while at > 1 and list[at - 1].start > t do
            at = at - 1
        end
        insert(list, at, into)
        into.queued_close = session_close_time(self, into)
        heap_push(ps.heap, into)
    else
        if t < into.start then
            into.start = t
        end
        if t > into.last then
            into.last = t
        end
    end
    into.agg = self.add(into.agg, ev, k)
    ps.dirty[into] = true
    return true
end

local function drop_session(ps, s)
    s.gone = true
    ps.dirty[s] = nil
    if s.saved_start then
        ps.deletes[#ps.deletes + 1] = s
    end
    local list = ps.sessions[s.key]
    for j = 1, #list do
        if list[j] == s then
            remove(list, j)
            break
        end
    end
    if #list == 0 then
        ps.sessions[s.key] = nil
    end
end

local function by_start_then_key(a, b)
    if a.start ~= b.start then
        return a.start < b.start
    end
    return a.key < b.key
end

local function close_sessions(self, ps, ctx)
    local heap, st = ps.heap, ps.time
    local closing
    -- The heap holds each session under the close time it had when queued; a session extended
    -- since then is queued again under its current close time (lazily, instead of per record).
    while heap[1] ~= nil and heap[1].queued_close <= st do
        local s = heap_pop(heap)
        if not s.gone then
            local close = session_close_time(self, s)
            if close <= st then
                closing = closing or {}
                closing[#closing + 1] = s
            else
                s.queued_close = close
                heap_push(heap, s)
            end
        end
    end
    if closing == nil then
        return
    end
    sort(closing, by_start_then_key)
    for _, s in ipairs(closing) do
        drop_session(ps, s)
        emit_results(self, ctx, s.key, s.start, s.last, s.agg)
    end
    ctx.metric("windows_closed", #closing)
end

local function session_state_key(start, k)
    return "ses/" .. start .. "/" .. k
end

local function flush_sessions(self, ps, p, ctx)
    local put, encode = ctx.put, self.encode_agg
    -- deletions first: a key deleted here is never one written below (sessions are disjoint)
    local deletes = ps.deletes
    for j = 1, #deletes do
        local s = deletes[j]
        put(session_state_key(s.saved_start, s.key), nil, p)
    end
    if #deletes > 0 then
        ps.deletes = {}
    end
    local dirty = ps.dirty
    for s in pairs(dirty) do
        if s.saved_start and s.saved_start ~= s.start then
            put(session_state_key(s.saved_start, s.key), nil, p) -- the session grew backwards
        end
        put(session_state_key(s.start, s.key), s.last .. "/" .. encode(s.agg), p)
        s.saved_start = s.start
        dirty[s] = nil
    end
end

local function new_sessions_partition()
    return { time = MIN_TIME, time_dirty = false, sessions = {}, heap = {}, dirty = {}, deletes = {} }
end

local function restore_sessions(self, ps, entries)
    local decode = self.decode_agg
    for name, value in pairs(entries) do
        local start, k = name:match("^ses/(%-?%d+)/(.*)$")
        start = start and tointeger(tonumber(start))
        local last, agg = value:match("^(%-?%d+)/(.*)$")
        last = last and tointeger(tonumber(last))
        if start and last then
            local s = { key = k, start = start, last = last, agg = decode(agg), saved_start = start }
            s.queued_close = session_close_time(self, s)
            local list = ps.sessions[k]
            if list == nil then
                list = {}
                ps.sessions[k] = list
            end
            list[#list + 1] = s
            heap_push(ps.heap, s)
        end
    end
    for _, list in pairs(ps.sessions) do
        sort(list, by_start_then_key)
    end
end

---------------------------------------------------------------------------------------------
-- The processor

local Processor = common.mixin({}) -- partition_state, process_batch, process, revoke, tick, install
Processor.__index = Processor
Processor.cursor = cursor

-- Ingests batch records first..n. Errors propagate (with current_index set) so that the caller
-- can dead-letter that one record and go on from the next: no pcall per record.
local function ingest(self, batch, ctx, first)
    local keys, values, stamps, partitions = batch.key, batch.value, batch.timestamp, batch.partition
    local decode, key_of, time_field, time_of = self.decode, self.key_of, self.time_field, self.time_of
    local time_what, place, parts = self.time_what, self.place, self.parts
    local late_topic = self.late_topic
    local current_partition, ps
    current_index = first - 1 -- an error before the first record is not a record's fault
    for i = first, batch.n do
        current_index = i
        local ev = decode(values[i])
        local t
        if time_field then
            t = ev[time_field]
        elseif time_of then
            t = time_of(ev, stamps[i])
        else
            t = stamps[i]
        end
        t = tointeger(t) or to_event_time(t, time_what) -- one C call for integers and integral floats
        local k = keys[i]
        if key_of then
            k = key_of(ev, k)
            if type(k) ~= "string" then
                k = to_group_key(k)
            end
        elseif k == nil then -- record keys are strings or nil
            to_group_key(k)
        end
        local p = partitions[i]
        if p ~= current_partition then
            current_partition, ps = p, parts[p] or self:partition_state(p)
        end
        if place(self, ps, k, t, ev) then
            if t > ps.time then
                ps.time = t
                ps.time_dirty = true
            end
        else
            ctx.metric("late", 1)
            if late_topic then
                ctx.emit(late_topic, keys[i], values[i], nil, stamps[i])
            end
        end
    end
end

Processor.ingest = ingest -- run by the shared process_batch and process

-- Why record i failed, for the dead-letter topic.
function Processor:explain(batch, i, err)
    local value = batch.value[i]
    if value == nil and self.decode ~= identity then
        return "record has no value"
    end
    return common.value_fault(self.decode, value, self.time_field) or tostring(err)
end

function Processor:close_due(ctx)
    for _, ps in pairs(self.parts) do
        self.close(self, ps, ctx)
    end
    local punctuators = self.stream_punctuators
    if punctuators then
        for p, ps in pairs(self.parts) do
            local t = ps.time
            if t ~= MIN_TIME then
                local marks = ps.stream_marks
                if not marks then
                    marks = {}
                    ps.stream_marks = marks
                end
                for i, pu in ipairs(punctuators) do
                    local mark = t - t % pu.ms
                    local last = marks[i]
                    marks[i] = mark
                    if last and mark > last then -- the first sighting only sets the mark
                        pu.fn(p, t, ctx)
                    end
                end
            end
        end
    end
end
Processor.after_batch = Processor.close_due -- the shared drivers close windows after each batch

function Processor:flush(ctx)
    for p, ps in pairs(self.parts) do
        if ps.time_dirty then
            ctx.put(TIME_KEY, tostring(ps.time), p)
            ps.time_dirty = false
        end
        self.flush_partition(self, ps, p, ctx)
    end
end

function Processor:restore(p, entries, ctx)
    local ps = self.new_partition()
    self.parts[p] = ps
    local time = entries[TIME_KEY]
    time = time and tointeger(tonumber(time))
    if time then
        ps.time = time
    end
    self.restore_partition(self, ps, entries)
end

function Processor:every(ms, fn)
    local list = self.punctuators
    list[#list + 1] = windows.every(ms, fn)
    return self
end

-- Stream-time punctuation: fn(partition, stream_time, ctx) runs after a batch that moved a
-- partition's stream time past a multiple of ms (once, however many it passed). Records drive
-- it, so it runs the same on a replay; an idle partition does not run it.
function Processor:every_stream(ms, fn)
    positive_integer(ms, "every_stream's interval")
    local list = self.stream_punctuators or {}
    self.stream_punctuators = list
    list[#list + 1] = { ms = ms, fn = fn }
    return self
end

local function default_result(key, start, stop, agg)
    return json.encode { key = key, start = start, stop = stop, value = agg }
end

local function new_processor(o)
    if type(o) ~= "table" then
        error("windows: expected a table of options", 3)
    end
    local self = setmetatable({}, Processor)
    if o.decode == false then
        self.decode = identity
    else
        self.decode = o.decode or json.decode
    end
    if not common.time_option(self, o.time) then
        error("windows: time must be a field name or a function", 3)
    end
    self.key_of = o.key
    self.init = o.init or function() return 0 end
    self.add = o.add or function(agg) return agg + 1 end
    self.merge = o.merge or function(a, b) return a + b end
    self.result = o.result or default_result
    self.output = o.output
    self.late_topic = o.late_topic
    self.encode_agg = o.encode_agg or encode_agg_default
    self.decode_agg = o.decode_agg or decode_agg_default
    self.grace = non_negative_integer(o.grace, "grace", "windows")
    return common.init(self)
end

local function time_windows(o, size, advance)
    local self = new_processor(o)
    self.size, self.advance = size, advance
    self.close_after = size + self.grace
    self.place, self.close = window_placer(self), close_windows
    self.flush_partition, self.restore_partition = flush_windows, restore_windows
    self.new_partition = new_windows_partition
    return self
end

function windows.tumbling(o)
    local size = positive_integer(o and o.size, "size")
    return time_windows(o, size, size)
end

function windows.hopping(o)
    local size = positive_integer(o and o.size, "size")
    local advance = positive_integer(o.advance, "advance")
    if advance > size then
        error("windows: advance must not exceed size", 2)
    end
    return time_windows(o, size, advance)
end

function windows.session(o)
    local self = new_processor(o)
    self.gap = positive_integer(o.gap, "gap")
    self.place, self.close = place_in_session, close_sessions
    self.flush_partition, self.restore_partition = flush_sessions, restore_sessions
    self.new_partition = new_sessions_partition
    return self
end

-- A tick function running fn(now_ms, ctx) at most every `ms` of wall clock (first at the first
-- tick). For a script of its own: `tick = windows.every(1000, function(now, ctx) ... end)`.
function windows.every(ms, fn)
    positive_integer(ms, "every's interval")
    return common.punctuator(ms, fn)
end

return windows
