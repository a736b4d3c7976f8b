-- A poll's (or a stream view's) answer was written: drop the message it held;
-- wake the next poll. A session whose client counts ('sent' in its hash) keeps
-- the message in its replay list, within the bounds.
-- KEYS: f bus
-- ARGV: token prefix maxlen max_n max_c
local f, bus = KEYS[1], KEYS[2]
local token, prefix, maxlen = ARGV[1], ARGV[2], ARGV[3]
local max_n, max_c = tonumber(ARGV[4]), tonumber(ARGV[5])
local held = redis.call('HGET', f, token)
if not held then return 0 end
redis.call('HDEL', f, token)
local cut = string.find(held, '\n', 1, true)
local sid = string.sub(held, 1, cut - 1)
local s = prefix .. ':s:' .. sid
if redis.call('HEXISTS', s, 'sent') == 1 then
  record(s, prefix .. ':r:' .. sid, string.sub(held, cut + 1), max_n, max_c)
end
if redis.call('HGET', s, 'fly') == token then
  redis.call('HDEL', s, 'fly')
  if redis.call('LLEN', prefix .. ':q:' .. sid) > 0 then
    -- The caller wakes its own worker's polls (the token names that worker).
    local me = string.match(token, '^(.+):%d+$') or ''
    wake_others(prefix .. ':k:' .. sid, bus, maxlen, sid, now_ms(), me)
  end
end
return 1
