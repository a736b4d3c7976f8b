-- Milliseconds since each session was last served (0 while a poll waits, -1: unknown).
-- KEYS: s... k...
-- ARGV: n
local n = tonumber(ARGV[1])
local now = now_ms()
local out = {}
for i = 1, n do
  local seen = redis.call('HGET', KEYS[i], 'seen')
  if not seen then out[i] = -1
  elseif redis.call('ZCOUNT', KEYS[n + i], now, '+inf') > 0 then out[i] = 0
  else out[i] = math.max(0, now - tonumber(seen)) end
end
return out
