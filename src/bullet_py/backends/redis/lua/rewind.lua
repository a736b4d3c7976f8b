-- A counting client reconnected having received 'seen' messages of a session
-- whose queue is in Redis: put what it missed (kept in the replay list) back
-- at the head of the queue, in order. The first count starts the replay list.
-- One message of a session is in flight at a time (fly): written by a view or
-- a poll whose acknowledgement has not landed yet. A client that counts it
-- received it: it is acknowledged here (the late acknowledgement does nothing).
-- Returns 'ok', or 'gap' when what it missed is no longer all kept.
-- KEYS: s q r k bus
-- ARGV: seen sid maxlen max_n max_c
local s, q, r, k, bus = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local seen, sid, maxlen = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local max_n, max_c = tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('EXISTS', s) == 0 then return 'gap' end
local sent = redis.call('HGET', s, 'sent')
if not sent then
  redis.call('HSET', s, 'sent', seen, 'rc', 0)
  return 'ok'
end
sent = tonumber(sent)
local fly = redis.call('HGET', s, 'fly')
if seen == sent + 1 and fly then
  local prefix = string.sub(s, 1, string.len(s) - string.len(sid) - 3)
  local fk = prefix .. ':f:' .. (string.match(fly, '^(.+):%d+$') or '')
  local held = redis.call('HGET', fk, fly)
  if held then
    redis.call('HDEL', fk, fly)
    redis.call('HDEL', s, 'fly')
    record(s, r, string.sub(held, string.len(sid) + 2), max_n, max_c)
    sent = sent + 1
  end
end
if seen < 0 or seen > sent then return 'gap' end
local missed = sent - seen
local n = redis.call('LLEN', r)
if missed > n then return 'gap' end
if missed > 0 then
  local again = redis.call('LRANGE', r, n - missed, n - 1)
  local qc = 0
  for i = #again, 1, -1 do
    redis.call('LPUSH', q, again[i])
    qc = qc + chars(again[i])
  end
  redis.call('HINCRBY', s, 'qc', qc)
  redis.call('PEXPIRE', q, redis.call('PTTL', s))
  wake(k, bus, maxlen, sid, now_ms())
end
redis.call('DEL', r)
redis.call('HSET', s, 'sent', seen, 'rc', 0)
return 'ok'
