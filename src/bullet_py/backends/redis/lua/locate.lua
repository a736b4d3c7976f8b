-- Claim a pending id for this worker, or say where its session lives.
-- A claim lasts claim_ms unless the worker confirms it made the session
-- (announce.lua): a claim that ran after its caller gave up (Redis stalled)
-- lapses, and the id is unknown again.
-- Returns {placement, home, queued}.
-- KEYS: pending s q k workers
-- ARGV: sid me ttl_ms trust claim_ms
local pending, s, q, k, workers = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local sid, me, ttl_ms, trust, claim_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local now = now_ms()
local expires = redis.call('ZSCORE', pending, sid)
if expires then
  redis.call('ZREM', pending, sid)
  if tonumber(expires) > now then
    redis.call('DEL', s, q, k)
    redis.call('HSET', s, 'home', me, 'queued', '1', 'seen', now, 'wseq', 0, 'qc', 0,
      'cl', now + claim_ms)
    redis.call('PEXPIRE', s, ttl_ms)
    return {'claimed', me, '1'}
  end
end
local home = redis.call('HGET', s, 'home')
if not home then return {'unknown', '', '0'} end
if home == me then return {'here', home, '1'} end
if dead(workers, home, now, trust) or lapsed(s, now) then
  redis.call('DEL', s, q, k)
  return {'unknown', '', '0'}
end
redis.call('HSET', s, 'seen', now)
redis.call('PEXPIRE', s, ttl_ms)
return {'elsewhere', home, redis.call('HGET', s, 'queued') or '1'}
