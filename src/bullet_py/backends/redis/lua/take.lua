-- Take the next message of a session's queue for one poll, or park the poll.
--
-- One message of a session is in flight at a time (field 'fly' of its hash
-- names the poll holding it), so that a poll dying with a message in hand
-- cannot let a later message overtake it: the next poll waits, or takes that
-- very message over once the holder's worker is known dead.
--
-- A take can run after its caller gave up on it (Redis stalled past the
-- call's timeout): the caller then fences its token (cancel.lua), and a take
-- finding its token fenced does nothing.
--
-- A parked poll is told when to look again ({'parked', ms}): when the home,
-- or the worker holding the message in flight, would be dead if it stays
-- silent, or when an unconfirmed claim lapses. So a poll waiting on a dead
-- worker's session is answered within worker_ttl, not at its own timeout.
-- A stream view acknowledges the message it wrote last in the same call
-- (ack: its token), so a stream of messages costs one round trip each.
-- Returns {'msg', message}, {'parked', ms or ''} or {'gone', '' or 'orphan'}.
-- KEYS: s q k f workers x r
-- ARGV: sid token me park_ms ttl_ms trust prefix homed_here ack max_n max_c
local s, q, k, f, workers, x, r = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local sid, token, me, park_ms = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local ttl_ms, trust, prefix, homed_here = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local ack, max_n, max_c = ARGV[9], tonumber(ARGV[10]), tonumber(ARGV[11])
if ack ~= '' then
  local done = redis.call('HGET', f, ack)
  if done then
    redis.call('HDEL', f, ack)
    if redis.call('HEXISTS', s, 'sent') == 1 then
      record(s, r, string.sub(done, string.len(sid) + 2), max_n, max_c)
    end
    if redis.call('HGET', s, 'fly') == ack then redis.call('HDEL', s, 'fly') end
  end
end
if redis.call('EXISTS', x) == 1 then return {'gone', ''} end
local held = redis.call('HGET', f, token)
if held then return {'msg', string.sub(held, string.len(sid) + 2)} end
local now = now_ms()
local home = redis.call('HGET', s, 'home')
if not home and homed_here == '1' then
  -- Redis lost it (restarted empty) but the session lives here: say so again.
  redis.call('HSET', s, 'home', me, 'queued', '1', 'seen', now)
  home = me
end
if not home then return {'gone', ''} end
if home ~= me and (dead(workers, home, now, trust) or lapsed(s, now)) then
  -- A parked session outlives its home: the next request (locate) takes it over.
  if redis.call('HGET', s, 'pk') == '1' then return {'gone', 'orphan'} end
  redis.call('DEL', s, q, k)
  return {'gone', ''}
end
local recheck = nil
local function watch(ms)
  if ms and (not recheck or ms < recheck) then recheck = ms end
end
if home ~= me then
  watch(expiry(workers, home, now))
  watch(claim_left(s, now))
end
redis.call('HSET', s, 'seen', now)
redis.call('PEXPIRE', s, ttl_ms)
redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
local holder = redis.call('HGET', s, 'fly')
if holder and holder ~= token then
  local w = string.match(holder, '^(.+):%d+$') or ''
  local fk = prefix .. ':f:' .. w
  local theirs = redis.call('HGET', fk, holder)
  if not theirs then
    redis.call('HDEL', s, 'fly')
  elseif not dead(workers, w, now, trust) then
    watch(expiry(workers, w, now))
    redis.call('ZADD', k, now + park_ms, token)
    redis.call('PEXPIRE', k, ttl_ms)
    return {'parked', recheck or ''}
  else
    redis.call('HDEL', fk, holder)
    redis.call('HSET', f, token, theirs)
    redis.call('PEXPIRE', f, ttl_ms)
    redis.call('HSET', s, 'fly', token)
    redis.call('ZREM', k, token)
    return {'msg', string.sub(theirs, string.len(sid) + 2)}
  end
end
local m = redis.call('LPOP', q)
if m then
  redis.call('HINCRBY', s, 'qc', -chars(m))
  redis.call('HSET', f, token, sid .. '\n' .. m)
  redis.call('PEXPIRE', f, ttl_ms)
  redis.call('HSET', s, 'fly', token)
  redis.call('ZREM', k, token)
  return {'msg', m}
end
redis.call('ZADD', k, now + park_ms, token)
redis.call('PEXPIRE', k, ttl_ms)
return {'parked', recheck or ''}
