-- A fork's reference to this stream, its source. ARGV[2]: '1' with a content type,
-- ARGV[3]: it, ARGV[4]: the fork offset ('' for the tail), ARGV[5]: the sub-offset.
-- {'ok', unref, ct, ex, ev, offset, inherited chunks...} |
-- {'notfound'|'deleted'|'type'|'badpoint', unref}
local now = now_ms()
local s, unref = open(now)
if not s then return {'notfound', unref} end
if s.del then return {'deleted', unref} end
if ARGV[2] == '1' and not same_type(ARGV[3], s.ct) then return {'type', unref} end
local offset = s.tail
if ARGV[4] ~= '' then offset = tonumber(ARGV[4]) end
local sub = tonumber(ARGV[5])
if offset > s.tail then return {'badpoint', unref} end
local out = {'ok', unref, s.ct, s.ex, n2s(s.ev), n2s(offset)}
local chunks = {}
if not chunks_between(0, offset, chunks) then return {'badpoint', unref} end
if sub > 0 then
  if offset >= s.tail then return {'badpoint', unref} end
  if is_json(s.ct) then
    if offset + sub > s.tail or not chunks_between(offset, offset + sub, chunks) then
      return {'badpoint', unref}
    end
  else
    local next = {}
    if not chunks_between(offset, offset + 1, next) or sub > #next[1] then
      return {'badpoint', unref}
    end
    chunks[#chunks + 1] = string.sub(next[1], 1, sub)
  end
end
adopt(s, now)
s.forks = redis.call('HINCRBY', META, 'forks', 1)
backstop(s, now)
for _, c in ipairs(chunks) do out[#out + 1] = c end
return out
