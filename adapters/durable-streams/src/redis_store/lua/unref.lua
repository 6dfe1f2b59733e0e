-- A fork of this stream went: one reference less; a soft-deleted stream left with none
-- is removed, and its own source returned for the same. {'ok', unref}
local v = redis.call('HMGET', META, 'forks', 'del')
if not v[1] then return {'ok', false} end
local forks = redis.call('HINCRBY', META, 'forks', -1)
if forks > 0 then return {'ok', false} end
if forks < 0 then redis.call('HSET', META, 'forks', '0') end
local s = load()
if not s then return {'ok', false} end
if s.del then
  s.forks = 0
  return {'ok', remove(s)}
end
backstop(s, now_ms())
return {'ok', false}
