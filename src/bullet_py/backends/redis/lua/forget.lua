-- A session ended: drop its state and queue; tell every worker (its parked polls end).
-- Returns how many messages were still queued.
-- KEYS: s q k bus
-- ARGV: sid maxlen
local s, q, k, bus = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local sid, maxlen = ARGV[1], ARGV[2]
local n = redis.call('LLEN', q)
redis.call('DEL', s, q, k)
redis.call('XADD', bus, 'MAXLEN', '~', maxlen, '*', 'k', 'gone', 's', sid)
return n
