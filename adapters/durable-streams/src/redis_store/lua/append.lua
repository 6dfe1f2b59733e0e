-- POST. ARGV[2]: content type ('' none), ARGV[3]: '1' to close, ARGV[4]: '1' with a
-- Stream-Seq, ARGV[5]: the Stream-Seq, ARGV[6]: '1' with a producer, ARGV[7..9]: its
-- id, epoch and seq, ARGV[10]: '1' to refuse a log without metadata (a Cluster, where
-- its lease cannot be read here), ARGV[11..]: the chunks.
-- {'ok', unref, tail, closed} | {'dup', unref, tail, closed, last_seq} |
-- {'closed', unref, tail} | {'stale', unref, epoch} | {'gap', unref, expected} |
-- {'notfound'|'gone'|'owned'|'type'|'seqreg'|'epoch0', unref}
local FIRST = 11
local now = now_ms()
local s, unref = open(now)
if not s then return {'notfound', unref} end
if s.del then return {'gone', unref} end
local nchunks = #ARGV - FIRST + 1
local close = ARGV[3] == '1'
local pid, epoch, seq = nil, tonumber(ARGV[8]), tonumber(ARGV[9])
if ARGV[6] == '1' then pid = ARGV[7] end
local key = false
if pid then key = pid .. '\n' .. ARGV[8] .. '\n' .. ARGV[9] end
if s.closed then
  if nchunks == 0 and close then
    local last = 0
    if pid then last = seq end
    return {'dup', unref, n2s(s.tail), 1, n2s(last)}
  end
  if key and s.cb == key then return {'dup', unref, n2s(s.tail), 1, n2s(seq)} end
  return {'closed', unref, n2s(s.tail)}
end
-- A live lease: a resumable_stream producer writes this log.
if LEASE and redis.call('EXISTS', LEASE) == 1 then return {'owned', unref} end
if s.foreign and ARGV[10] == '1' then return {'owned', unref} end
if nchunks > 0 and ARGV[2] ~= '' and not same_type(ARGV[2], s.ct) then
  return {'type', unref}
end
local pfield = false
if pid then
  pfield = 'p:' .. pid
  local raw = redis.call('HGET', META, pfield)
  local pe, pl
  if raw then
    local e, l = string.match(raw, '^(%d+):(%d+)$')
    pe, pl = tonumber(e), tonumber(l)
  end
  if pe and epoch < pe then return {'stale', unref, n2s(pe)} end
  if pe and epoch == pe then
    if seq <= pl then return {'dup', unref, n2s(s.tail), closed_flag(s), n2s(pl)} end
    if seq > pl + 1 then return {'gap', unref, n2s(pl + 1)} end
  elseif seq ~= 0 then
    if pe then return {'epoch0', unref} end
    return {'gap', unref, '0'}
  end
end
if ARGV[4] == '1' and s.ss and not bytes_gt(ARGV[5], s.ss) then
  return {'seqreg', unref}
end
adopt(s, now)
if ARGV[4] == '1' then redis.call('HSET', META, 'ss', ARGV[5]) end
if pfield then redis.call('HSET', META, pfield, n2s(epoch) .. ':' .. n2s(seq)) end
local tail = add_chunks(s.tail, FIRST, #ARGV)
if close then
  add_end(tail)
  s.closed = true
  if key then redis.call('HSET', META, 'cb', key) end
end
redis.call('HSET', META, 'tt', n2s(now))
backstop(s, now)
return {'ok', unref, n2s(tail), closed_flag(s)}
