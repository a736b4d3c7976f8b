-- Park a session in Redis: its stream dropped (or its worker stops), so its
-- queue (and a counting client's count and replay list) moves here, where any
-- worker can serve it and, once its home is dead, take it over (locate.lua).
-- nq = -1: the queue is in Redis already (a polling session): only mark it.
-- bid: the last bus entry the home applied; pushes of later ones name theirs.
-- Wakes the workers waiting for the session to be parked. Runs once.
-- The worker's set of parked sessions (pw) lets another end the ones nobody
-- comes back for once it is dead (orphans.lua).
-- KEYS: s q k bus r pw parkers
-- ARGV: me ttl_ms sent bid maxlen sid nq nr message...
local s, q, k, bus, r, pw, parkers = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local me, ttl_ms, sent, bid, maxlen, sid = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local nq, nr = tonumber(ARGV[7]), tonumber(ARGV[8])
local home = redis.call('HGET', s, 'home')
if home and home ~= me then return 0 end
if redis.call('HGET', s, 'pk') == '1' then return 0 end
local now = now_ms()
if nq >= 0 then
  redis.call('DEL', q, r)
  local qc = 0
  for i = 1, nq do
    local m = ARGV[8 + i]
    redis.call('RPUSH', q, m)
    qc = qc + chars(m)
  end
  local rc = 0
  for i = 1, nr do
    local m = ARGV[8 + nq + i]
    redis.call('RPUSH', r, m)
    rc = rc + chars(m)
  end
  redis.call('HSET', s, 'qc', qc, 'rc', rc)
  if sent ~= '-1' then redis.call('HSET', s, 'sent', sent) end
end
redis.call('HSET', s, 'home', me, 'queued', '1', 'pk', '1', 'bid', bid)
redis.call('HDEL', s, 'cl')
redis.call('HSET', s, 'seen', now)  -- the stream just ended: activity
redis.call('HSETNX', s, 'wseq', 0)
redis.call('HSETNX', s, 'qc', 0)
redis.call('PEXPIRE', s, ttl_ms)
redis.call('PEXPIRE', q, ttl_ms)
redis.call('PEXPIRE', r, ttl_ms)
redis.call('SADD', pw, sid)
redis.call('SADD', parkers, me)
redis.call('XADD', bus, 'MAXLEN', '~', maxlen, '*', 'k', 'wake', 's', sid)
return 1
