-- A poll's answer could not be written: put its message back at the head of the queue.
-- KEYS: f bus
-- ARGV: token prefix maxlen ttl_ms
local f, bus = KEYS[1], KEYS[2]
local token, prefix, maxlen, ttl_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local held = redis.call('HGET', f, token)
if not held then return 0 end
redis.call('HDEL', f, token)
return requeue(prefix, bus, maxlen, ttl_ms, token, held, now_ms())
