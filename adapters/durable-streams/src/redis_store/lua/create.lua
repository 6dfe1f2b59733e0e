-- PUT. ARGV[2]: '1' with a content type, ARGV[3]: it, ARGV[4]/[5]: expiry kind
-- ('n', 't' seconds, 'a' ms) and value, ARGV[6]: '1' closed, ARGV[7]: '1' a fork,
-- ARGV[8..10]: its source, offset ('' for the tail) and sub-offset, ARGV[11]: '1' when
-- the source was referenced (then ARGV[12..15]: its content type, expiry kind and
-- value, the fork offset), ARGV[16]: how many of the chunks are inherited,
-- ARGV[17..]: the chunks.
-- {'new'|'existing', unref, ct, ex, ev, tail, closed} | {'conflict'|'needbase', unref}
local FIRST = 17
local now = now_ms()
local s, unref = open(now)
local has_ct, ct, ex, ev = ARGV[2] == '1', ARGV[3], ARGV[4], tonumber(ARGV[5])
local closed, fork = ARGV[6] == '1', ARGV[7] == '1'
if s then
  if s.del then return {'conflict', unref} end
  local type_ok
  if has_ct then type_ok = same_type(ct, s.ct)
  else type_ok = fork or same_type('application/octet-stream', s.ct) end
  local expiry_ok = (ex == s.ex and ev == s.ev) or (ex == 'n' and fork)
  local fork_ok = true
  if fork then
    fork_ok = s.fs ~= nil and s.fs == ARGV[8]
      and (ARGV[9] == '' or tonumber(ARGV[9]) == tonumber(s.fo))
      and tonumber(ARGV[10]) == tonumber(s.fso)
  end
  if type_ok and expiry_ok and fork_ok and closed == s.closed then
    return {'existing', unref, s.ct, s.ex, n2s(s.ev), n2s(s.tail), closed_flag(s)}
  end
  return {'conflict', unref}
end
if fork and ARGV[11] ~= '1' then return {'needbase', unref} end
if not has_ct then ct = 'application/octet-stream' end
if fork then
  ct = ARGV[12]
  if ex == 'n' then ex, ev = ARGV[13], tonumber(ARGV[14]) end
end
s = {ct = ct, ex = ex, ev = ev, tt = now, forks = 0, closed = closed}
redis.call('HSET', META, 'ct', ct, 'ex', ex, 'ev', n2s(ev), 'tt', n2s(now), 'forks', '0')
if fork then
  redis.call('HSET', META, 'fs', ARGV[8], 'fo', ARGV[15], 'fso', ARGV[10])
end
local tail = add_chunks(0, FIRST, #ARGV)
if closed then add_end(tail) end
backstop(s, now)
return {'new', unref, ct, ex, n2s(ev), n2s(tail), closed_flag(s)}
