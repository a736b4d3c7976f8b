-- A take whose outcome its poll never saw (Redis stalled, the call timed out)
-- ended: fence its token, so a take still on its way does nothing when it
-- runs; if one already ran, put back what it took. Either order ends the same.
-- KEYS: f k x bus
-- ARGV: token prefix maxlen ttl_ms
local f, k, x, bus = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local token, prefix, maxlen, ttl_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
redis.call('SET', x, '1', 'PX', ttl_ms)
redis.call('ZREM', k, token)
local held = redis.call('HGET', f, token)
if not held then return 0 end
redis.call('HDEL', f, token)
return requeue(prefix, bus, maxlen, ttl_ms, token, held, now_ms())
