-- This worker is alive for ttl_ms more (a negative ttl_ms marks it dead now).
-- Every beat also trims the bus of entries older than max_age_ms (0: none),
-- and records how far this worker's bus reader has applied (pos, '' if it
-- has not started): if the worker dies with sessions attached to it, the
-- worker taking one over reads the bus from there (locate.lua). The record
-- lasts as long as a session of this worker could (keep_ms).
-- KEYS: workers bus wpos
-- ARGV: me ttl_ms max_age_ms pos keep_ms
local workers, bus, wpos = KEYS[1], KEYS[2], KEYS[3]
local me, ttl_ms, max_age = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local pos, keep_ms = ARGV[4], ARGV[5]
local now = now_ms()
redis.call('ZADD', workers, now + ttl_ms, me)
if max_age > 0 then
  redis.call('XTRIM', bus, 'MINID', '~', (now - max_age) .. '-0')
end
if pos ~= '' then redis.call('SET', wpos, pos, 'PX', keep_ms) end
return now
