-- Append a large entry, or a forwarded POST, to the bus, within its bounds.
-- (Smaller entries are appended with XADD alone: bounded by maxlen.)
--
-- These entries are listed in 'big' ("<id> <bytes> <kind>", oldest first)
-- and totalled in 'total'. When the total goes over max_bytes, the stream is
-- trimmed from its start up to and including listed entries, oldest first,
-- until the total is three quarters of max_bytes (so trimming comes in
-- batches); how many entries were trimmed is returned, for the caller to
-- report. On the way, forwarded POSTs older than fwd_ms, of no use since their
-- POST was answered, are deleted where they are (not reported); listed entries
-- older than max_age_ms (trimmed by beat.lua) leave the list. A forwarded POST
-- looks at the list's head every time, so expired ones do not wait.
-- Returns {id, trimmed, trimmed_bytes, expired}.
-- KEYS: bus big total
-- ARGV: maxlen max_age_ms max_bytes fwd_ms kind field...
local bus, big, total = KEYS[1], KEYS[2], KEYS[3]
local maxlen, max_age = ARGV[1], tonumber(ARGV[2])
local max_bytes, fwd_ms, kind = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local id = redis.call('XADD', bus, 'MAXLEN', '~', maxlen, '*', unpack(ARGV, 6))
local size = 0
for i = 6, #ARGV do size = size + string.len(ARGV[i]) end
redis.call('RPUSH', big, id .. ' ' .. size .. ' ' .. kind)
local bytes = redis.call('INCRBY', total, size)
if bytes <= max_bytes and kind ~= 'fwd' then return {id, 0, 0, 0} end
local target = bytes
if bytes > max_bytes then target = math.floor(max_bytes * 3 / 4) end
local now = tonumber(string.match(id, '^(%d+)'))  -- the stream's clock: the id just made
local cut, cut_bytes, expired, freed = nil, 0, 0, 0
while true do
  local head = redis.call('LINDEX', big, 0)
  if not head then break end
  local hid, hsize, hkind = string.match(head, '^(%S+) (%d+) (%S+)$')
  hsize = tonumber(hsize)
  local ms, seq = string.match(hid, '^(%d+)-(%d+)$')
  ms = tonumber(ms)
  local useless = hkind == 'fwd' and ms + fwd_ms < now
  local old = max_age > 0 and ms + max_age < now
  if not (useless or old or bytes - freed > target) then break end
  redis.call('LPOP', big)
  freed = freed + hsize
  if useless then
    expired = expired + redis.call('XDEL', bus, hid)
  elseif not old then
    cut = ms .. '-' .. (tonumber(seq) + 1)
    cut_bytes = cut_bytes + hsize
  end
end
if freed > 0 then redis.call('DECRBY', total, freed) end
local trimmed = 0
if cut then trimmed = redis.call('XTRIM', bus, 'MINID', cut) end
if trimmed == 0 then cut_bytes = 0 end
return {id, trimmed, cut_bytes, expired}
