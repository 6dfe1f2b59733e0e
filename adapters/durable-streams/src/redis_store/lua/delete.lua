-- DELETE: {'done'|'notfound'|'gone', unref}
local now = now_ms()
local s, unref = open(now)
if not s then return {'notfound', unref} end
if s.del then return {'gone', unref} end
return {'done', remove(s)}
