-- Helpers every script starts with (prepended when the scripts are loaded).
--
-- Every script that writes is idempotent, because the writer retries a batch
-- whose outcome it could not see: replaying one must change nothing.
-- Queue sizes count characters (code points, as Python's len), not bytes:
-- the bound is the one an in-memory queue applies.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Code points of a UTF-8 string: its bytes that do not continue a sequence.
local function chars(text)
  local _, continuing = string.gsub(text, '[\128-\191]', '')
  return string.len(text) - continuing
end

-- Whether bus entry id 'a' comes after 'b': "<ms>-<seq>" names a stream entry
-- (all of it), "<ms>-<seq>-<i>" the i-th push of a grouped one.
local function entry_parts(id)
  local ms, sq, i = string.match(id, '^(%d+)-(%d+)-?(%d*)$')
  if i == nil or i == '' then i = math.huge else i = tonumber(i) end
  return tonumber(ms or 0), tonumber(sq or 0), i
end

local function id_after(a, b)
  local am, as, ai = entry_parts(a)
  local bm, bs, bi = entry_parts(b)
  if am ~= bm then return am > bm end
  if as ~= bs then return as > bs end
  return ai > bi
end

-- A counting client's replay list: one more message sent, the oldest beyond the bounds dropped.
local function record(s, r, m, max_n, max_c)
  redis.call('HINCRBY', s, 'sent', 1)
  redis.call('RPUSH', r, m)
  local rc = tonumber(redis.call('HINCRBY', s, 'rc', chars(m)))
  local n = redis.call('LLEN', r)
  while n > 0 and (n > max_n or rc > max_c) do
    rc = rc - chars(redis.call('LPOP', r))
    n = n - 1
  end
  redis.call('HSET', s, 'rc', rc)
  local ttl = redis.call('PTTL', s)
  if ttl > 0 then redis.call('PEXPIRE', r, ttl) end
end

local function wake(parked, bus, maxlen, sid, now)
  if redis.call('ZCOUNT', parked, now, '+inf') > 0 then
    redis.call('XADD', bus, 'MAXLEN', '~', maxlen, '*', 'k', 'wake', 's', sid)
  end
end

-- The same, for a caller that wakes its own worker's polls itself (the push's and
-- the acknowledgement's callbacks do): a bus entry only for polls parked elsewhere.
-- Tokens are '<worker>:<n>'; a session has a few parked polls at most.
local function wake_others(parked, bus, maxlen, sid, now, me)
  local mine = me .. ':'
  for _, token in ipairs(redis.call('ZRANGEBYSCORE', parked, now, '+inf')) do
    if string.sub(token, 1, string.len(mine)) ~= mine then
      redis.call('XADD', bus, 'MAXLEN', '~', maxlen, '*', 'k', 'wake', 's', sid)
      return
    end
  end
end

local function dead(workers, who, now, trust)
  if trust ~= '1' then return false end
  local until_ms = redis.call('ZSCORE', workers, who)
  return (not until_ms) or tonumber(until_ms) < now
end

-- Milliseconds until worker 'who' is dead if it stays silent (nil: unknown worker).
local function expiry(workers, who, now)
  local until_ms = redis.call('ZSCORE', workers, who)
  if not until_ms then return nil end
  return math.max(0, tonumber(until_ms) - now)
end

-- A claimed session's home is only what a worker actually created: a claim
-- ('cl', its expiry) holds until the worker confirms (announce, push).
local function claim_left(s, now)
  local cl = redis.call('HGET', s, 'cl')
  if not cl then return nil end
  return math.max(0, tonumber(cl) - now)
end

local function lapsed(s, now)
  local cl = redis.call('HGET', s, 'cl')
  return cl ~= false and tonumber(cl) < now
end

-- Put a message a poll held ("<sid>\n<message>") back at the head of its queue.
local function requeue(prefix, bus, maxlen, ttl, token, held, now)
  local i = string.find(held, '\n', 1, true)
  local sid = string.sub(held, 1, i - 1)
  local m = string.sub(held, i + 1)
  local s = prefix .. ':s:' .. sid
  if redis.call('EXISTS', s) == 0 then return 0 end
  local q = prefix .. ':q:' .. sid
  redis.call('LPUSH', q, m)
  redis.call('HINCRBY', s, 'qc', chars(m))
  redis.call('PEXPIRE', q, ttl)
  if redis.call('HGET', s, 'fly') == token then redis.call('HDEL', s, 'fly') end
  wake(prefix .. ':k:' .. sid, bus, maxlen, sid, now)
  return 1
end
