-- A session ended: drop its state and queue; tell every worker (its parked polls end).
-- Returns how many messages were still queued.
-- A worker that is no longer the session's home (another took it over) drops nothing.
-- KEYS: s q k bus r
-- ARGV: sid maxlen me
local s, q, k, bus, r = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local sid, maxlen, me = ARGV[1], ARGV[2], ARGV[3]
local home = redis.call('HGET', s, 'home')
if home and home ~= me then return 0 end
local n = redis.call('LLEN', q)
if redis.call('HGET', s, 'pk') == '1' then
  redis.call('SREM', string.sub(s, 1, string.len(s) - string.len(sid) - 3) .. ':p:' .. me, sid)
end
redis.call('DEL', s, q, k, r)
redis.call('XADD', bus, 'MAXLEN', '~', maxlen, '*', 'k', 'gone', 's', sid)
return n
