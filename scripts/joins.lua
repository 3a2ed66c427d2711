-- joins: stream-table and windowed stream-stream joins for Lua processors.
--
--   local joins = require("joins")
--   joins.stream_table {
--       stream = "clicks", table = "ads",
--       join = function(click, ad, key) return click .. "|" .. (ad or "-") end,
--       left = false,                 -- true: a stream record without a table row joins nil
--   }:install()
--
--   joins.stream_stream {
--       left = "impressions", right = "clicks", within = 10000, grace = 0,
--       time = "ts",                  -- as in windows: field, function(ev, rec_ts), nil = record ts
--       join = function(impression, click, key) return ... end,
--   }:install()
--
-- Both sides must be co-partitioned: the same partition count and the same key. When the keys
-- differ, a preceding stage running the shipped script `rekey` re-keys one side into its own topic.
--
-- Common options: join(a, b, key) -> value [, out_key] (nil value: nothing emitted), output
-- (topic, default the stage's first output), decode (function, or true for json.decode;
-- default: join gets the value strings). Records from `<topic>.retry.<n>` count as `<topic>`.
--
-- stream_table: a table record (a compacted topic) sets its key's row in its partition, a null
-- value deletes it. A stream record is joined with its key's current row, in the order the
-- records arrive (no timestamp alignment between the two topics). Inner join: a stream record
-- without a row emits nothing and counts metric "unmatched". Output timestamp: the stream
-- record's.
--
-- stream_stream: a left and a right record of the same key join when their event times are at
-- most `within` apart. Each record is kept (per partition and key) until its partition's
-- stream time (largest event time of either side) passes t + within + grace; every matching
-- pair is emitted once, when the second of the two arrives, as join(left, right, key) with
-- timestamp the later event time. A record older than stream time - grace is late: counted
-- ("late") and dropped, as its partners may be gone. Records with no key or no value count as
-- "skipped". A value that cannot be decoded or has no valid event time is dead-lettered.
--
-- State (per input partition, written at flush):
--   stream_table:  "tbl/<key>"                     the row (the table record's value)
--   stream_stream: "ssj.time"                      stream time of the partition
--                  "ssj.seq"                       number of records buffered so far
--                  "ssj/<L|R>/<seq>/<key>"         "<event time>/<value>" of a buffered record
--
-- Needs stream_common.lua (the helpers shared with windows) where require finds it.

local common = require("stream_common")
local to_event_time, non_negative_integer = common.to_event_time, common.non_negative_integer
local math_type, tointeger = math.type, math.tointeger
local sort = table.sort
local pairs, type, tostring, tonumber = pairs, type, tostring, tonumber
local error, setmetatable = error, setmetatable

local MIN_TIME = math.mininteger
local LEFT, RIGHT = 1, 2
local STREAM, TABLE = 1, 2

local joins = {}

-- Index in the batch of the record being ingested; read (through cursor, by the drivers in
-- stream_common) when it raises an error so that only that record is dead-lettered.
local current_index = 0
local function cursor() return current_index end

local function decoder(option)
    if option == true then
        return json.decode
    end
    if option ~= nil and option ~= false and type(option) ~= "function" then
        error("joins: decode must be a function or true", 3)
    end
    return option or nil
end

---------------------------------------------------------------------------------------------
-- What both joins share. The batch drivers, the installed globals and tick come from
-- stream_common; each join provides ingest, flush and restore.

local Join = common.mixin({}) -- partition_state, process_batch, process, revoke, tick, install
Join.__index = Join
Join.cursor = cursor

-- Maps a topic to its side: a topic itself or one of its retry topics.
function Join:side_of(topic)
    for name, side in pairs(self.topic_sides) do
        if topic == name or (type(topic) == "string" and topic:sub(1, #name + 7) == name .. ".retry.") then
            self.sides[topic] = side
            return side
        end
    end
    error("record from topic " .. tostring(topic) .. ", which this join does not read", 0)
end

-- Why record i failed, for the dead-letter topic.
function Join:explain(batch, i, err)
    local decode, value = self.decode, batch.value[i]
    local fault = decode and value ~= nil and common.value_fault(decode, value, self.time_field)
    return fault or tostring(err)
end

function Join:after_batch(ctx)
end

function Join:every(ms, fn)
    if math_type(ms) ~= "integer" or ms <= 0 then
        error("joins: every's interval must be a positive integer (ms)", 2)
    end
    local list = self.punctuators
    list[#list + 1] = common.punctuator(ms, fn)
    return self
end

local function new_join(class, o, topic_sides)
    local self = setmetatable({}, class)
    if type(o.join) ~= "function" then
        error("joins: join must be a function(a, b, key)", 3)
    end
    self.join, self.output = o.join, o.output
    self.topic_sides, self.sides = topic_sides, {}
    return common.init(self)
end

---------------------------------------------------------------------------------------------
-- Stream-table join

local StreamTable = setmetatable({}, { __index = Join })
StreamTable.__index = StreamTable

local function new_table_partition()
    -- rows: key -> (decoded) row; dirty: key -> value string to write, false to delete
    return { rows = {}, dirty = {} }
end

function StreamTable:ingest(batch, ctx, first)
    local keys, values, stamps, topics, partitions = batch.key, batch.value, batch.timestamp, batch.topic, batch.partition
    local sides, parts, decode, join, output, left = self.sides, self.parts, self.decode, self.join, self.output, self.left
    local current_partition, rows, dirty
    current_index = first - 1 -- an error before the first record is not a record's fault
    for i = first, batch.n do
        current_index = i
        local side = sides[topics[i]] or self:side_of(topics[i])
        local p = partitions[i]
        if p ~= current_partition then
            local ps = parts[p] or self:partition_state(p)
            current_partition, rows, dirty = p, ps.rows, ps.dirty
        end
        local k, value = keys[i], values[i]
        if side == TABLE then
            if k == nil then
                error("table record has no key", 0)
            end
            if value == nil then
                rows[k] = nil
                dirty[k] = false
            else
                local row = value
                if decode then
                    row = decode(value)
                end
                rows[k] = row
                dirty[k] = value
            end
        else
            local row
            if k ~= nil then
                row = rows[k]
            end
            if row == nil and not left then
                ctx.metric("unmatched", 1)
            else
                if decode and value ~= nil then
                    value = decode(value)
                end
                local out, out_key = join(value, row, k)
                if out ~= nil then
                    ctx.emit(output, out_key or k, out, nil, stamps[i])
                end
            end
        end
    end
end

function StreamTable:flush(ctx)
    local put = ctx.put
    for p, ps in pairs(self.parts) do
        local dirty = ps.dirty
        for k, value in pairs(dirty) do
            put("tbl/" .. k, value or nil, p)
            dirty[k] = nil
        end
    end
end

function StreamTable:restore(p, entries, ctx)
    local ps = new_table_partition()
    self.parts[p] = ps
    local decode = self.decode
    for name, value in pairs(entries) do
        local k = name:match("^tbl/(.*)$")
        if k then
            local row = value
            if decode then
                row = decode(value)
            end
            ps.rows[k] = row
        end
    end
end

function joins.stream_table(o)
    if type(o) ~= "table" or type(o.stream) ~= "string" or type(o.table) ~= "string" or o.stream == o.table then
        error("joins.stream_table: needs two different topics, stream and table", 2)
    end
    local self = new_join(StreamTable, o, { [o.stream] = STREAM, [o.table] = TABLE })
    self.left = o.left and true or false
    self.decode = decoder(o.decode)
    self.new_partition = new_table_partition
    return self
end

---------------------------------------------------------------------------------------------
-- Stream-stream join

local StreamStream = setmetatable({}, { __index = Join })
StreamStream.__index = StreamStream

local SIDE_LETTER = { [LEFT] = "L", [RIGHT] = "R" }
local LETTER_SIDE = { L = LEFT, R = RIGHT }

local function new_stream_partition()
    return {
        time = MIN_TIME, time_dirty = false, seq = 0, seq_dirty = false,
        buffers = { [LEFT] = {}, [RIGHT] = {} }, -- side -> key -> records in arrival order
        added = {}, -- records buffered since the last flush
        expired = {}, -- records already written that expired since the last flush
        next_purge = MIN_TIME,
    }
end

local function buffered_state_key(e)
    return "ssj/" .. SIDE_LETTER[e.side] .. "/" .. e.seq .. "/" .. e.key
end

function StreamStream:ingest(batch, ctx, first)
    local keys, values, stamps, topics, partitions = batch.key, batch.value, batch.timestamp, batch.topic, batch.partition
    local sides, parts, decode, join, output = self.sides, self.parts, self.decode, self.join, self.output
    local time_field, time_of, time_what = self.time_field, self.time_of, self.time_what
    local within, grace = self.within, self.grace
    local current_partition, ps
    current_index = first - 1 -- an error before the first record is not a record's fault
    for i = first, batch.n do
        current_index = i
        local side = sides[topics[i]] or self:side_of(topics[i])
        local k, raw = keys[i], values[i]
        if k == nil or raw == nil then
            ctx.metric("skipped", 1)
        else
            local v = raw
            if decode then
                v = decode(raw)
            end
            local t
            if time_field then
                t = v[time_field]
            elseif time_of then
                t = time_of(v, stamps[i])
            else
                t = stamps[i]
            end
            t = tointeger(t) or to_event_time(t, time_what) -- one C call for integers and integral floats
            local p = partitions[i]
            if p ~= current_partition then
                current_partition, ps = p, parts[p] or self:partition_state(p)
            end
            if t + grace < ps.time then
                ctx.metric("late", 1)
            else
                local buffers = ps.buffers
                local partners = buffers[3 - side][k]
                if partners then
                    for j = 1, #partners do
                        local e = partners[j]
                        local d = e.t - t
                        if d <= within and d >= -within then
                            local out, out_key
                            if side == LEFT then
                                out, out_key = join(v, e.value, k)
                            else
                                out, out_key = join(e.value, v, k)
                            end
                            if out ~= nil then
                                ctx.emit(output, out_key or k, out, nil, d > 0 and e.t or t)
                            end
                        end
                    end
                end
                local seq = ps.seq + 1
                ps.seq, ps.seq_dirty = seq, true
                local e = { side = side, key = k, t = t, seq = seq, raw = raw, value = v }
                local own = buffers[side]
                local list = own[k]
                if list == nil then
                    own[k] = { e }
                else
                    list[#list + 1] = e
                end
                ps.added[#ps.added + 1] = e
                if t > ps.time then
                    ps.time, ps.time_dirty = t, true
                end
            end
        end
    end
end

-- Drops the records no on-time record can match any more. Done every purge_every ms of stream
-- time, not per record: an expired record still buffered cannot match an on-time one anyway.
local function purge(self, ps)
    local st = ps.time
    local keep_after = st - self.within - self.grace -- t + within + grace < st: expired
    for side = LEFT, RIGHT do
        local by_key = ps.buffers[side]
        for k, list in pairs(by_key) do
            local kept = 0
            for j = 1, #list do
                local e = list[j]
                if e.t < keep_after then
                    e.gone = true
                    if e.saved then
                        ps.expired[#ps.expired + 1] = e
                    end
                else
                    kept = kept + 1
                    list[kept] = e
                end
            end
            if kept == 0 then
                by_key[k] = nil
            else
                for j = #list, kept + 1, -1 do
                    list[j] = nil
                end
            end
        end
    end
    ps.next_purge = st + self.purge_every
end

function StreamStream:after_batch(ctx)
    for _, ps in pairs(self.parts) do
        if ps.time >= ps.next_purge then
            purge(self, ps)
        end
    end
end

function StreamStream:flush(ctx)
    local put = ctx.put
    for p, ps in pairs(self.parts) do
        if ps.time_dirty then
            put("ssj.time", tostring(ps.time), p)
            ps.time_dirty = false
        end
        if ps.seq_dirty then
            put("ssj.seq", tostring(ps.seq), p)
            ps.seq_dirty = false
        end
        local expired, added = ps.expired, ps.added
        for j = 1, #expired do
            put(buffered_state_key(expired[j]), nil, p)
        end
        for j = 1, #added do
            local e = added[j]
            if not e.gone then -- expired before it was ever written: nothing to store
                put(buffered_state_key(e), e.t .. "/" .. e.raw, p)
                e.saved = true
            end
        end
        if #expired > 0 then
            ps.expired = {}
        end
        if #added > 0 then
            ps.added = {}
        end
    end
end

local function by_seq(a, b)
    return a.seq < b.seq
end

function StreamStream:restore(p, entries, ctx)
    local ps = new_stream_partition()
    self.parts[p] = ps
    ps.time = tointeger(tonumber(entries["ssj.time"] or "")) or MIN_TIME
    ps.seq = tointeger(tonumber(entries["ssj.seq"] or "")) or 0
    local decode = self.decode
    for name, value in pairs(entries) do
        local letter, seq, k = name:match("^ssj/([LR])/(%d+)/(.*)$")
        local t, raw = value:match("^(%-?%d+)/(.*)$")
        if letter and t then
            local e = { side = LETTER_SIDE[letter], key = k, t = tointeger(tonumber(t)),
                        seq = tointeger(tonumber(seq)), raw = raw, value = raw, saved = true }
            if decode then
                e.value = decode(raw)
            end
            local by_key = ps.buffers[e.side]
            local list = by_key[k]
            if list == nil then
                list = {}
                by_key[k] = list
            end
            list[#list + 1] = e
        end
    end
    -- arrival order, so that pairs are emitted in the same order as before the restart
    for side = LEFT, RIGHT do
        for _, list in pairs(ps.buffers[side]) do
            sort(list, by_seq)
        end
    end
end

function joins.stream_stream(o)
    if type(o) ~= "table" or type(o.left) ~= "string" or type(o.right) ~= "string" or o.left == o.right then
        error("joins.stream_stream: needs two different topics, left and right", 2)
    end
    local self = new_join(StreamStream, o, { [o.left] = LEFT, [o.right] = RIGHT })
    if math_type(o.within) ~= "integer" then
        error("joins.stream_stream: within must be an integer (ms)", 2)
    end
    self.within = non_negative_integer(o.within, "within", "joins")
    self.grace = non_negative_integer(o.grace, "grace", "joins")
    self.purge_every = o.purge_every or (self.within > 1000 and self.within or 1000)
    self.decode = decoder(o.decode)
    if not common.time_option(self, o.time) then
        error("joins.stream_stream: time must be a field name or a function", 2)
    end
    if self.time_field then
        self.decode = self.decode or json.decode -- a field needs a decoded value
    end
    self.new_partition = new_stream_partition
    return self
end

return joins
