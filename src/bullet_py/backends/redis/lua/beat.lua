-- This worker is alive for ttl_ms more (a negative ttl_ms marks it dead now).
-- KEYS: workers
-- ARGV: me ttl_ms
local workers = KEYS[1]
local me, ttl_ms = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
redis.call('ZADD', workers, now + ttl_ms, me)
return now
