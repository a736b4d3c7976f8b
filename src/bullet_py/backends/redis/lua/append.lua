-- Append an entry to the bus, bounded in entries, age and bytes.
--
-- Entries of at least big_at bytes, and every forwarded POST (kind fwd), are
-- listed in 'big' ("<id> <bytes> <kind>", oldest first) and counted in
-- 'total'. Forwarded POSTs older than fwd_ms are of no use (their POST was
-- answered already): they are deleted. When the listed entries exceed
-- max_bytes, the oldest are deleted; the count and bytes deleted are
-- returned so that the caller reports the overflow. Entries already gone
-- (trimmed by count or age) only leave the list.
-- Returns {id, dropped, dropped_bytes, expired}.
-- KEYS: bus big total
-- ARGV: maxlen max_age_ms max_bytes big_at fwd_ms kind field...
local bus, big, total = KEYS[1], KEYS[2], KEYS[3]
local maxlen, max_age = ARGV[1], tonumber(ARGV[2])
local max_bytes, big_at, fwd_ms = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local kind = ARGV[6]
local now = now_ms()
local size = 0
for i = 7, #ARGV do size = size + string.len(ARGV[i]) end
local id = redis.call('XADD', bus, 'MAXLEN', '~', maxlen, '*', unpack(ARGV, 7))
if max_age > 0 then
  redis.call('XTRIM', bus, 'MINID', '~', (now - max_age) .. '-0')
end
local was = tonumber(redis.call('GET', total) or '0')
local bytes = was
if size >= big_at or kind == 'fwd' then
  redis.call('RPUSH', big, id .. ' ' .. size .. ' ' .. kind)
  bytes = bytes + size
end
local dropped, dropped_bytes, expired = 0, 0, 0
while true do
  local head = redis.call('LINDEX', big, 0)
  if not head then break end
  local hid, hsize, hkind = string.match(head, '^(%S+) (%d+) (%S+)$')
  hsize = tonumber(hsize)
  local ms = tonumber(string.match(hid, '^(%d+)'))
  local useless = hkind == 'fwd' and ms + fwd_ms < now
  local old = max_age > 0 and ms + max_age < now
  if not (useless or old or bytes > max_bytes) then break end
  redis.call('LPOP', big)
  bytes = bytes - hsize
  if redis.call('XDEL', bus, hid) == 1 then
    if useless or old then
      expired = expired + 1
    else
      dropped = dropped + 1
      dropped_bytes = dropped_bytes + hsize
    end
  end
end
if bytes ~= was then redis.call('SET', total, math.max(0, bytes)) end
return {id, dropped, dropped_bytes, expired}
