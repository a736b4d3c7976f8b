-- Claim a pending id for this worker, or say where its session lives.
-- A claim lasts claim_ms unless the worker confirms it made the session
-- (announce.lua): a claim that ran after its caller gave up (Redis stalled)
-- lapses, and the id is unknown again.
-- A parked session (pk: a stream session whose stream dropped, or any session
-- of a worker that stopped gracefully) outlives its home: when the home is
-- dead (or a takeover's claim lapsed), this worker takes it over, under the
-- same lease; being one script, exactly one worker wins. It gets the id of the
-- last bus entry the old home applied (bid), so it can apply the ones after.
-- Returns {placement, home, queued, parked, bid, cr}: cr is '1' when the head
-- of the queue holds CR (an event stream cannot carry it).
-- KEYS: pending s q k workers r
-- ARGV: sid me ttl_ms trust claim_ms
local pending, s, q, k, workers, r = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local sid, me, ttl_ms, trust, claim_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local now = now_ms()
local expires = redis.call('ZSCORE', pending, sid)
if expires then
  redis.call('ZREM', pending, sid)
  if tonumber(expires) > now then
    redis.call('DEL', s, q, k, r)
    redis.call('HSET', s, 'home', me, 'queued', '1', 'seen', now, 'wseq', 0, 'qc', 0,
      'cl', now + claim_ms)
    redis.call('PEXPIRE', s, ttl_ms)
    return {'claimed', me, '1', '0', '', '0'}
  end
end
local home = redis.call('HGET', s, 'home')
if not home then return {'unknown', '', '0', '0', '', '0'} end
local pk = redis.call('HGET', s, 'pk') or '0'
-- The next message: the one a poll or a view holds (it goes back to the head
-- if its write fails, as an event stream's does with CR), else the head.
local head = nil
local fly = redis.call('HGET', s, 'fly')
if fly then
  local prefix = string.sub(s, 1, string.len(s) - string.len(sid) - 3)
  local w = string.match(fly, '^(.+):%d+$') or ''
  head = redis.call('HGET', prefix .. ':f:' .. w, fly)
end
if not head then head = redis.call('LINDEX', q, 0) end
local cr = '0'
if head and string.find(head, '\r', 1, true) then cr = '1' end
if home == me then return {'here', home, '1', pk, '', cr} end
if dead(workers, home, now, trust) or lapsed(s, now) then
  if pk == '1' then
    local prefix = string.sub(s, 1, string.len(s) - string.len(sid) - 3)
    redis.call('SMOVE', prefix .. ':p:' .. home, prefix .. ':p:' .. me, sid)
    redis.call('SADD', prefix .. ':parkers', me)
    redis.call('HSET', s, 'home', me, 'cl', now + claim_ms, 'wseq', 0, 'seen', now)
    redis.call('PEXPIRE', s, ttl_ms)
    redis.call('PEXPIRE', q, ttl_ms)
    return {'taken', me, '1', '1', redis.call('HGET', s, 'bid') or '0-0', cr}
  end
  redis.call('DEL', s, q, k, r)
  return {'unknown', '', '0', '0', '', '0'}
end
redis.call('HSET', s, 'seen', now)
redis.call('PEXPIRE', s, ttl_ms)
return {'elsewhere', home, redis.call('HGET', s, 'queued') or '1', pk, '', cr}
