-- Put back what the polls of dead workers (or of one worker, only) held; forget them.
-- Returns how many messages were put back.
-- KEYS: workers bus
-- ARGV: prefix maxlen ttl_ms only
local workers, bus = KEYS[1], KEYS[2]
local prefix, maxlen, ttl_ms, only = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = now_ms()
local gone = redis.call('ZRANGEBYSCORE', workers, '-inf', '(' .. now)
if only ~= '' then gone = {only} end
local moved = 0
for _, w in ipairs(gone) do
  local fly = prefix .. ':f:' .. w
  local items = redis.call('HGETALL', fly)
  local held = {}
  for i = 1, #items, 2 do
    local n = tonumber(string.match(items[i], ':(%d+)$')) or 0
    table.insert(held, {n, items[i], items[i + 1]})
  end
  table.sort(held, function(a, b) return a[1] > b[1] end)
  for _, e in ipairs(held) do
    moved = moved + requeue(prefix, bus, maxlen, ttl_ms, e[2], e[3], now)
  end
  redis.call('DEL', fly)
  redis.call('ZREM', workers, w)
end
return moved
