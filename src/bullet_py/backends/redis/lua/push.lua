-- Append a message to a session's queue, once (seq), within the queue's bounds.
-- The caller decides what a full queue does (when_full, from the shared overflow
-- rule): 'refused' keeps the queue as it is, 'dropped_oldest' drops from the head
-- until the message fits. Returns {'ok'|'dup'|'refused'|'dropped', count}.
-- KEYS: s q k bus
-- ARGV: message chars seq max_messages max_chars when_full ttl_ms me maxlen sid
local s, q, k, bus = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local message, size, seq = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local maxn, maxc, when_full = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local ttl_ms, me, maxlen, sid = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local now = now_ms()
if tonumber(redis.call('HGET', s, 'wseq') or '0') >= seq then return {'dup', 0} end
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
redis.call('RPUSH', q, message)
redis.call('HSET', s, 'qc', c + size)
redis.call('PEXPIRE', q, ttl_ms)
wake_others(k, bus, maxlen, sid, now, me)  -- the caller wakes this worker's polls
if dropped > 0 then return {'dropped', dropped} end
return {'ok', 0}
