-- Read. ARGV[2]: the start ('tail' or chunks), ARGV[3]: max bytes, ARGV[4]: '1' to
-- renew a TTL. {'ok', unref, ct, ex, ev, tail, closed, start, chunks...} |
-- {'notfound'|'gone'|'pasttail'|'trimmed', unref}
local now = now_ms()
local s, unref = open(now)
if not s then return {'notfound', unref} end
if s.del then return {'gone', unref} end
if ARGV[4] == '1' and not s.foreign and s.ex == 't' then
  redis.call('HSET', META, 'tt', n2s(now))
  backstop(s, now)
end
local start = s.tail
if ARGV[2] ~= 'tail' then start = tonumber(ARGV[2]) end
if start > s.tail then return {'pasttail', unref} end
local out = {'ok', unref, s.ct, s.ex, n2s(s.ev), n2s(s.tail), closed_flag(s), n2s(start)}
local max, bytes, pos = tonumber(ARGV[3]), 0, start
while pos < s.tail do
  local entries = redis.call('XRANGE', LOG, n2s(pos + 1) .. '-0', '+', 'COUNT', 64)
  local progressed = false
  for _, e in ipairs(entries) do
    if e[1] == END_ID then break end
    local after, count = id_parts(e[1])
    local idx = after - count
    if idx > pos then
      if #out == 8 then return {'trimmed', unref} end
      return out
    end
    local f = e[2]
    for i = 2, #f, 2 do
      if idx >= pos then
        local c = f[i]
        if #out > 8 and bytes + #c > max then return out end
        out[#out + 1] = c
        bytes = bytes + #c
        pos = idx + 1
        progressed = true
      end
      idx = idx + 1
    end
  end
  if not progressed then break end
end
return out
