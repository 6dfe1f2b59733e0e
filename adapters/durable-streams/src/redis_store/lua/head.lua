-- HEAD: {'ok', unref, ct, ex, ev, tail, closed} | {'notfound'|'gone', unref}
local now = now_ms()
local s, unref = open(now)
if not s then return {'notfound', unref} end
if s.del then return {'gone', unref} end
return {'ok', unref, s.ct, s.ex, n2s(s.ev), n2s(s.tail), closed_flag(s)}
