-- A stream view wrote a reply directly (not through the queue): a counting
-- client counts it, so the replay list keeps it. Runs once per (worker, seq).
-- KEYS: s r
-- ARGV: message me seq max_n max_c
local s, r = KEYS[1], KEYS[2]
local m, me, seq, max_n, max_c = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('HEXISTS', s, 'sent') == 0 then return 0 end
local field = 'r:' .. me
if tonumber(redis.call('HGET', s, field) or '0') >= seq then return 0 end
redis.call('HSET', s, field, seq)
record(s, r, m, max_n, max_c)
return 1
