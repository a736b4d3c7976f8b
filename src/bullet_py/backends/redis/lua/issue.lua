-- Remember a pending session id until it comes back or expires (bounded in count).
-- KEYS: pending
-- ARGV: sid ttl_ms limit
local pending = KEYS[1]
local sid, ttl_ms, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', pending, '-inf', now)
local extra = redis.call('ZCARD', pending) - limit + 1
if extra > 0 then redis.call('ZPOPMIN', pending, extra) end
redis.call('ZADD', pending, now + ttl_ms, sid)
return 1
