-- Shared by every script of the Redis store (prepended to each). KEYS[1] is the
-- stream's metadata hash, KEYS[2] its log (resumable-stream's durable log format),
-- KEYS[3] its producer lease when the lease shares the script's slot (one Redis; absent
-- on a Cluster). ARGV[1] is the content type of a log that has no metadata hash (made
-- by resumable_stream).
local META, LOG, LEASE = KEYS[1], KEYS[2], KEYS[3]
local FOREIGN_CT = ARGV[1]
-- resumable_stream::wire::log::END_ID, and its fields (checked by a Rust test).
local END_ID = '18446744073709551615-0'
-- Chunks per XADD (one entry each): keeps unpack() under Lua's stack limit.
local BATCH = 1000
-- How long keys outlive their expiry (a backstop: expiry is enforced lazily).
local GRACE_MS = 60000

local function n2s(n) return string.format('%d', n) end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- An entry id `{after}-{count}` as two numbers.
local function id_parts(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end

-- Bytewise a > b (Lua's own comparison follows the server's collation locale).
local function bytes_gt(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end

local function media(t)
  local m = string.match(t, '^[^;]*')
  m = string.gsub(m, '^%s+', '')
  m = string.gsub(m, '%s+$', '')
  return string.lower(m)
end

local function same_type(a, b) return media(a) == media(b) end

local function is_json(t) return media(t) == 'application/json' end

-- The log's length in chunks and whether it has its end entry.
local function log_state()
  local top = redis.call('XREVRANGE', LOG, '+', '-', 'COUNT', 2)
  local tail, closed = 0, false
  for _, e in ipairs(top) do
    if e[1] == END_ID then
      closed = true
      local f = e[2]
      for i = 1, #f, 2 do
        if f[i] == 'next' then tail = tonumber(f[i + 1]) or 0 end
      end
    else
      tail = id_parts(e[1])
      break
    end
  end
  return tail, closed
end

local FIELDS = {'ct', 'ex', 'ev', 'tt', 'forks', 'del', 'fs', 'fo', 'fso', 'ss', 'cb'}

-- The stream (nil when there is none): its metadata, length and closure.
local function load()
  local v = redis.call('HMGET', META, unpack(FIELDS))
  local s = {}
  if not v[1] then
    if redis.call('EXISTS', LOG) == 0 then return nil end
    s.ct, s.ex, s.foreign = FOREIGN_CT, 'n', true
  else
    for i, f in ipairs(FIELDS) do
      if v[i] then s[f] = v[i] end
    end
  end
  s.ev = tonumber(s.ev) or 0
  s.tt = tonumber(s.tt) or 0
  s.forks = tonumber(s.forks) or 0
  s.tail, s.closed = log_state()
  return s
end

-- Gives a log made by resumable_stream a metadata hash (that expires with the log).
local function adopt(s, now)
  if not s.foreign then return end
  redis.call('HSET', META, 'ct', s.ct, 'ex', 'n', 'ev', '0', 'tt', n2s(now), 'forks', '0')
  local pttl = redis.call('PTTL', LOG)
  if pttl > 0 then redis.call('PEXPIRE', META, pttl) end
  s.foreign = false
  s.adopted = true
end

local function expired(s, now)
  if s.ex == 't' then return now - s.tt >= s.ev * 1000 end
  if s.ex == 'a' then return now >= s.ev end
  return false
end

-- Keys of a stream with an expiry vanish GRACE_MS after it, unless forks read it.
local function backstop(s, now)
  if s.foreign or s.adopted or s.ex == 'n' then return end
  if s.forks > 0 or s.del then
    redis.call('PERSIST', META)
    redis.call('PERSIST', LOG)
    return
  end
  local at = s.ev
  if s.ex == 't' then at = now + s.ev * 1000 end
  redis.call('PEXPIREAT', META, n2s(at + GRACE_MS))
  redis.call('PEXPIREAT', LOG, n2s(at + GRACE_MS))
end

-- Deletes the stream: soft while forks read it, else its keys go and the source it
-- was forked from is returned (the caller unreferences it: another slot).
local function remove(s)
  if s.forks > 0 then
    redis.call('HSET', META, 'del', '1')
    s.del = '1'
    return false
  end
  redis.call('DEL', META, LOG)
  return s.fs or false
end

-- The stream after lazy expiry, and the source to unreference if it just went.
local function open(now)
  local s = load()
  if s and not s.del and expired(s, now) then
    local unref = remove(s)
    if s.del then return s, false end
    return nil, unref
  end
  return s, false
end

-- Appends chunks ARGV[from..to] after `tail`, BATCH per entry; returns the new tail.
local function add_chunks(tail, from, to)
  local i = from
  while i <= to do
    local last = math.min(to, i + BATCH - 1)
    local count = last - i + 1
    local args = {'XADD', LOG, n2s(tail + count) .. '-' .. n2s(count)}
    for j = i, last do
      args[#args + 1] = 'd'
      args[#args + 1] = ARGV[j]
    end
    redis.call(unpack(args))
    tail = tail + count
    i = last + 1
  end
  return tail
end

local function add_end(tail)
  redis.call('XADD', LOG, END_ID, 'end', 'done', 'next', n2s(tail))
end

-- Chunks [from, to) of the log, appended to `out`; false when the log no longer holds
-- them all (trimmed) or has a gap.
local function chunks_between(from, to, out)
  local pos = from
  while pos < to do
    local entries = redis.call('XRANGE', LOG, n2s(pos + 1) .. '-0', '+', 'COUNT', 100)
    if #entries == 0 then return false end
    for _, e in ipairs(entries) do
      if e[1] == END_ID then return false end
      local after, count = id_parts(e[1])
      local idx = after - count
      if idx > pos then return false end
      local f = e[2]
      for i = 2, #f, 2 do
        if idx >= pos and idx < to then
          out[#out + 1] = f[i]
          pos = idx + 1
        end
        idx = idx + 1
      end
      if pos >= to then return true end
    end
  end
  return true
end

local function closed_flag(s) if s.closed then return 1 end return 0 end

