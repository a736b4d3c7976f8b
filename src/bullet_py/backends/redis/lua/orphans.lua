-- Parked sessions of dead workers that no client came back for within idle_ms:
-- this worker takes them over (as locate.lua does for a client), so that it
-- ends them, running their handler's on_close. At most 'limit' per call.
-- Returns a flat list: sid, bid, sid, bid...
-- KEYS: workers parkers
-- ARGV: prefix me ttl_ms trust claim_ms idle_ms limit
local workers, parkers = KEYS[1], KEYS[2]
local prefix, me, ttl_ms, trust = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local claim_ms, idle_ms, limit = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
if trust ~= '1' then return {} end
local now = now_ms()
local out = {}
for _, w in ipairs(redis.call('SMEMBERS', parkers)) do
  if w ~= me and dead(workers, w, now, trust) then
    local pw = prefix .. ':p:' .. w
    for _, sid in ipairs(redis.call('SMEMBERS', pw)) do
      if #out >= 2 * limit then return out end
      local s = prefix .. ':s:' .. sid
      local home = redis.call('HGET', s, 'home')
      if home ~= w or redis.call('HGET', s, 'pk') ~= '1' then
        redis.call('SREM', pw, sid)  -- ended, expired or moved
      elseif now - tonumber(redis.call('HGET', s, 'seen') or '0') >= idle_ms then
        redis.call('SMOVE', pw, prefix .. ':p:' .. me, sid)
        redis.call('SADD', parkers, me)
        redis.call('HSET', s, 'home', me, 'cl', now + claim_ms, 'wseq', 0, 'seen', now)
        redis.call('PEXPIRE', s, ttl_ms)
        table.insert(out, sid)
        table.insert(out, redis.call('HGET', s, 'bid') or '0-0')
      end
    end
    if redis.call('SCARD', pw) == 0 then redis.call('SREM', parkers, w) end
  end
end
return out
