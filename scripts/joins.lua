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

local math_type, floor, tointeger = math.type, math.floor, math.tointeger
local sort = table.sort
local pairs, ipairs, type, tostring, tonumber = pairs, ipairs, type, tostring, tonumber
local pcall, error, setmetatable, next = pcall, error, setmetatable, next

local MIN_TIME = math.mininteger
local LEFT, RIGHT = 1, 2
local STREAM, TABLE = 1, 2

local joins = {}

-- Index in the batch of the record being ingested; read when it raises an error so that only
-- that record is dead-lettered.
local current_index = 0

local function to_event_time(t, what)
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

local function non_negative_integer(v, name)
    if v == nil then
        return 0
    end
    if math_type(v) ~= "integer" or v < 0 then
        error("joins: " .. name .. " must be an integer >= 0 (ms), got " .. tostring(v), 3)
    end
    return v
end

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
-- What both joins share: the batch driver, the installed globals, punctuation.

local Join = {}
Join.__index = Join

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

function Join:partition_state(p)
    local ps = self.new_partition()
    self.parts[p] = ps
    return ps
end

function Join:explain(batch, i, err)
    local decode, value = self.decode, batch.value[i]
    if decode and value ~= nil then
        local ok, e = pcall(decode, value)
        if not ok then
            return "cannot decode value: " .. tostring(e)
        end
        if self.time_field and type(e) ~= "table" then
            return "value is not an object, so it has no field '" .. self.time_field .. "'"
        end
    end
    return tostring(err)
end

-- A failing record is dead-lettered and the batch goes on from the next one (pcall per
-- failure, not per record).
function Join:process_batch(batch, ctx)
    local first = 1
    while first <= batch.n do
        current_index = first - 1
        local ok, err = pcall(self.ingest, self, batch, ctx, first)
        if ok then
            break
        end
        local i = current_index
        if i < first then
            error(err, 0)
        end
        ctx.dead_letter(i, self:explain(batch, i, err))
        first = i + 1
    end
    self:after_batch(ctx)
end

function Join:process(record, ctx)
    local one = self.one
    one.key[1], one.value[1], one.timestamp[1] = record.key, record.value, record.timestamp
    one.partition[1], one.offset[1], one.topic[1] = record.partition, record.offset, record.topic
    current_index = 0
    local ok, err = pcall(self.ingest, self, one, ctx, 1)
    if not ok then
        if current_index ~= 1 then
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

function Join:after_batch(ctx)
end

function Join:revoke(p, ctx)
    self.parts[p] = nil
end

function Join:every(ms, fn)
    if math_type(ms) ~= "integer" or ms <= 0 then
        error("joins: every's interval must be a positive integer (ms)", 2)
    end
    local due = MIN_TIME
    local list = self.punctuators
    list[#list + 1] = function(now, ctx)
        if now >= due then
            due = now + ms
            fn(now, ctx)
        end
    end
    return self
end

function Join:tick(now, ctx)
    for _, run in ipairs(self.punctuators) do
        run(now, ctx)
    end
end

function Join:install(env)
    env = env or _ENV
    env.process_batch = function(batch, ctx) return self:process_batch(batch, ctx) end
    env.process = function(record, ctx) return self:process(record, ctx) end
    env.flush = function(ctx) return self:flush(ctx) end
    env.restore = function(p, entries, ctx) return self:restore(p, entries, ctx) end
    env.revoke = function(p, ctx) return self:revoke(p, ctx) end
    env.tick = function(now, ctx) return self:tick(now, ctx) end
    return self
end

local function new_join(class, o, topic_sides)
    local self = setmetatable({}, class)
    if type(o.join) ~= "function" then
        error("joins: join must be a function(a, b, key)", 3)
    end
    self.join, self.output = o.join, o.output
    self.topic_sides, self.sides = topic_sides, {}
    self.parts, self.punctuators = {}, {}
    self.one = { n = 1, key = {}, value = {}, timestamp = {}, partition = {}, offset = {}, topic = {} }
    return self
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
    self.within = non_negative_integer(o.within, "within")
    self.grace = non_negative_integer(o.grace, "grace")
    self.purge_every = o.purge_every or (self.within > 1000 and self.within or 1000)
    self.decode = decoder(o.decode)
    local time = o.time
    if type(time) == "string" then
        self.time_field, self.time_what = time, "field '" .. time .. "'"
        self.decode = self.decode or json.decode -- a field needs a decoded value
    elseif type(time) == "function" then
        self.time_of, self.time_what = time, "time function"
    elseif time == nil then
        self.time_what = "record timestamp"
    else
        error("joins.stream_stream: time must be a field name or a function", 2)
    end
    self.new_partition = new_stream_partition
    return self
end

return joins
