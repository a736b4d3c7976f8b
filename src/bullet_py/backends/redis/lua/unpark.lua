-- A poll stopped waiting: forget it, and count the session as just served.
-- KEYS: k s
-- ARGV: token
local k, s = KEYS[1], KEYS[2]
local token = ARGV[1]
redis.call('ZREM', k, token)
if redis.call('EXISTS', s) == 1 then redis.call('HSET', s, 'seen', now_ms()) end
return 1
