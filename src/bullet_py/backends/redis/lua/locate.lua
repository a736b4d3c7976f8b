-- Claim a pending id for this worker, or say where its session lives.
-- Returns {placement, home, queued}.
-- KEYS: pending s q k workers
-- ARGV: sid me ttl_ms trust
local pending, s, q, k, workers = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local sid, me, ttl_ms, trust = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = now_ms()
local expires = redis.call('ZSCORE', pending, sid)
if expires then
  redis.call('ZREM', pending, sid)
  if tonumber(expires) > now then
    redis.call('DEL', s, q, k)
    redis.call('HSET', s, 'home', me, 'queued', '1', 'seen', now, 'wseq', 0, 'qc', 0)
    redis.call('PEXPIRE', s, ttl_ms)
    return {'claimed', me, '1'}
  end
end
local home = redis.call('HGET', s, 'home')
if not home then return {'unknown', '', '0'} end
if home == me then return {'here', home, '1'} end
if dead(workers, home, now, trust) then
  redis.call('DEL', s, q, k)
  return {'unknown', '', '0'}
end
redis.call('HSET', s, 'seen', now)
redis.call('PEXPIRE', s, ttl_ms)
return {'elsewhere', home, redis.call('HGET', s, 'queued') or '1'}
