-- Claim a pending id for this worker, or say where its session lives.
-- A claim lasts claim_ms unless the worker confirms it made the session
-- (announce.lua): a claim that ran after its caller gave up (Redis stalled)
-- lapses, and the id is unknown again.
-- A parked session (pk: a stream session whose stream dropped, or any session
-- of a worker that stopped gracefully) outlives its home: when the home is
-- dead (or a takeover's claim lapsed), this worker takes it over, under the
-- same lease; being one script, exactly one worker wins. It gets the id of the
-- last bus entry the old home applied (bid), so it can apply the ones after.
-- A session still attached to its home when the home died (never parked) is
-- taken over too. A polling one's queue is in Redis already and its 'bid'
-- names the last bus push its home applied. A stream's queue died with its
-- home: the new home reads the bus from where the dead
-- one's reader was at its last heartbeat (beat.lua), so pushes made since
-- arrive (some of the last beat's interval may come twice), and 'gap' is '1':
-- a client that counts is told its count starts again.
-- Returns {placement, home, queued, parked, bid, cr, gap, life} (home: for 'taken',
-- the old home, whose own bus entries it applied itself): cr is '1' when
-- the head of the queue holds CR (an event stream cannot carry it); life, for
-- 'elsewhere', the milliseconds the home lives on if it stays silent (-1: none).
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
    return {'claimed', me, '1', '0', '', '0', '0', -1}
  end
end
local home = redis.call('HGET', s, 'home')
if not home then return {'unknown', '', '0', '0', '', '0', '0', -1} end
local pk = redis.call('HGET', s, 'pk') or '0'
local prefix = string.sub(s, 1, string.len(s) - string.len(sid) - 3)
-- The next message: the one a poll or a view holds (it goes back to the head
-- if its write fails, as an event stream's does with CR), else the head.
local head = nil
local fly = redis.call('HGET', s, 'fly')
if fly then
  local w = string.match(fly, '^(.+):%d+$') or ''
  head = redis.call('HGET', prefix .. ':f:' .. w, fly)
end
if not head then head = redis.call('LINDEX', q, 0) end
local cr = '0'
if head and string.find(head, '\r', 1, true) then cr = '1' end
if home == me then return {'here', home, '1', pk, '', cr, '0', -1} end
local gone = dead(workers, home, now, trust)
if gone or lapsed(s, now) then
  local bid, gap = redis.call('HGET', s, 'bid'), '0'
  if pk ~= '1' then
    if not gone then  -- a claim that lapsed, its home alive: the id is unknown again
      redis.call('DEL', s, q, k, r)
      return {'unknown', '', '0', '0', '', '0', '0', -1}
    end
    if redis.call('HGET', s, 'queued') ~= '1' then
      -- A stream's session: what its home held died with it. A home that
      -- never recorded a position leaves nothing to read the bus back from.
      bid = redis.call('GET', prefix .. ':wpos:' .. home)
      if not bid then
        redis.call('DEL', s, q, k, r)
        return {'unknown', '', '0', '0', '', '0', '0', -1}
      end
      gap = '1'
      redis.call('DEL', q, r)
      redis.call('HDEL', s, 'sent', 'fly')
      redis.call('HSET', s, 'qc', 0, 'rc', 0, 'queued', '1')
      cr = '0'
    end
    -- A polling session's queue is in Redis, and its 'bid' names the last bus
    -- push its home applied to it; reap.lua puts back the answer a poll of
    -- the dead home held (it comes again if it had been written).
  end
  redis.call('SREM', prefix .. ':p:' .. home, sid)
  redis.call('SADD', prefix .. ':p:' .. me, sid)
  redis.call('SADD', prefix .. ':parkers', me)
  redis.call('HSET', s, 'home', me, 'pk', '1', 'cl', now + claim_ms, 'wseq', 0, 'seen', now)
  redis.call('PEXPIRE', s, ttl_ms)
  redis.call('PEXPIRE', q, ttl_ms)
  return {'taken', home, '1', '1', bid or '0-0', cr, gap, -1}  -- the old home
end
redis.call('HSET', s, 'seen', now)
redis.call('PEXPIRE', s, ttl_ms)
return {'elsewhere', home, redis.call('HGET', s, 'queued') or '1', pk, '', cr, '0',
  expiry(workers, home, now) or -1}
