-- Append a message to a session's queue, once (seq), within the queue's bounds.
-- The caller decides what a full queue does (when_full, from the shared overflow
-- rule): 'refused' keeps the queue as it is, 'dropped_oldest' drops from the head
-- until the message fits. Returns {'ok'|'dup'|'refused'|'dropped'|'moved', count}.
--
-- A message that would be the queue's only one, with nothing in flight, goes
-- straight to a poll of this worker (me) parked on the session, as its take
-- would have taken it: held in f under the poll's token, the session's 'fly'.
-- Returns {'handed', 0, token}; the caller hands it to that poll, or puts it
-- back (requeue.lua) if the poll left meanwhile. A take round trip saved.
-- A push applied already returns {'dup', 0, the token in flight or ''}.
--
-- A push made for a bus entry names it (bid): the session's hash keeps the
-- last one applied, so a worker taking the session over knows from where the
-- bus may hold pushes nobody applied, and one applied twice is skipped. A
-- worker that is no longer the session's home (another took it over) pushes
-- nothing ('moved').
-- KEYS: s q k bus f
-- ARGV: message chars seq max_messages max_chars when_full ttl_ms me maxlen sid prefix bid
local s, q, k, bus, f = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local message, size, seq = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local maxn, maxc, when_full = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local ttl_ms, me, maxlen, sid, prefix = ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local bid = ARGV[12]
local now = now_ms()
if tonumber(redis.call('HGET', s, 'wseq') or '0') >= seq then
  -- Applied before, its answer unseen: it may have handed the message to the poll
  -- in flight, whose worker then settles that poll (a late answer, or put back).
  return {'dup', 0, redis.call('HGET', s, 'fly') or ''}
end
local home = redis.call('HGET', s, 'home')
if home and home ~= me then return {'moved', 0, ''} end
if bid ~= '' then
  local last = redis.call('HGET', s, 'bid')
  if last and not id_after(bid, last) then return {'dup', 0, ''} end
  redis.call('HSET', s, 'bid', bid)
end
redis.call('HSET', s, 'home', me, 'queued', '1', 'wseq', seq)
redis.call('HDEL', s, 'cl')  -- only a session's home pushes: its claim is confirmed
redis.call('HSETNX', s, 'seen', now)
local n = redis.call('LLEN', q)
local c = 0
if n > 0 then c = tonumber(redis.call('HGET', s, 'qc') or '0') end
local dropped = 0
redis.call('PEXPIRE', s, ttl_ms)
if n + 1 > maxn or c + size > maxc then
  if when_full ~= 'dropped_oldest' then return {'refused', 1} end
  while n > 0 and (n + 1 > maxn or c + size > maxc) do
    c = c - chars(redis.call('LPOP', q))
    n = n - 1
    dropped = dropped + 1
  end
end
if n == 0 and not redis.call('HGET', s, 'fly') then
  local mine = me .. ':'
  for _, token in ipairs(redis.call('ZRANGEBYSCORE', k, now, '+inf')) do
    if string.sub(token, 1, string.len(mine)) == mine
        and redis.call('EXISTS', prefix .. ':x:' .. token) == 0 then
      redis.call('HSET', f, token, sid .. '\n' .. message)
      redis.call('PEXPIRE', f, ttl_ms)
      redis.call('HSET', s, 'fly', token, 'qc', 0)
      redis.call('ZREM', k, token)
      return {'handed', 0, token}
    end
  end
end
redis.call('RPUSH', q, message)
redis.call('HSET', s, 'qc', c + size)
redis.call('PEXPIRE', q, ttl_ms)
wake_others(k, bus, maxlen, sid, now, me)  -- the caller wakes this worker's polls
if dropped > 0 then return {'dropped', dropped} end
return {'ok', 0}
