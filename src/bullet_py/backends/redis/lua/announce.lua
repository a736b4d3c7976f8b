-- The home says again that a session is its own (after a Redis restart, and periodically).
-- KEYS: s q
-- ARGV: me queued ttl_ms
local s, q = KEYS[1], KEYS[2]
local me, queued, ttl_ms = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
redis.call('HSET', s, 'home', me, 'queued', queued)
redis.call('HDEL', s, 'cl')  -- a claim, confirmed
redis.call('HSETNX', s, 'seen', now)
redis.call('HSETNX', s, 'wseq', 0)
redis.call('HSETNX', s, 'qc', 0)
redis.call('PEXPIRE', s, ttl_ms)
redis.call('PEXPIRE', q, ttl_ms)
return 1
