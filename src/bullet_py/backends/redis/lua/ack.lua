-- A poll's answer was written: drop the message it held; wake the next poll.
-- KEYS: f bus
-- ARGV: token prefix maxlen
local f, bus = KEYS[1], KEYS[2]
local token, prefix, maxlen = ARGV[1], ARGV[2], ARGV[3]
local held = redis.call('HGET', f, token)
if not held then return 0 end
redis.call('HDEL', f, token)
local sid = string.sub(held, 1, string.find(held, '\n', 1, true) - 1)
local s = prefix .. ':s:' .. sid
if redis.call('HGET', s, 'fly') == token then
  redis.call('HDEL', s, 'fly')
  if redis.call('LLEN', prefix .. ':q:' .. sid) > 0 then
    -- The caller wakes its own worker's polls (the token names that worker).
    local me = string.match(token, '^(.+):%d+$') or ''
    wake_others(prefix .. ':k:' .. sid, bus, maxlen, sid, now_ms(), me)
  end
end
return 1
