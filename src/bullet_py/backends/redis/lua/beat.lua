-- This worker is alive for ttl_ms more (a negative ttl_ms marks it dead now).
-- Every beat also trims the bus of entries older than max_age_ms (0: none).
-- KEYS: workers bus
-- ARGV: me ttl_ms max_age_ms
local workers, bus = KEYS[1], KEYS[2]
local me, ttl_ms, max_age = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
redis.call('ZADD', workers, now + ttl_ms, me)
if max_age > 0 then
  redis.call('XTRIM', bus, 'MINID', '~', (now - max_age) .. '-0')
end
return now
