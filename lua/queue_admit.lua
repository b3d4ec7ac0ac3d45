-- queue_admit.lua: one admission tick of one concert, atomic.
--  1. ACTIVE tokens past their expiry end (EXPIRED) and free their slots;
--  2. WAITING tokens not polled for the idle window leave the queue (EXPIRED);
--  3. the oldest WAITING tokens become ACTIVE, as many as the token bucket
--     allows (ADMISSION_RATE per second, at most one second's worth saved up)
--     and never past MAX_ACTIVE live ACTIVE tokens (0 = no cap).
-- The bucket lives here, in Redis, so the rate holds whichever server ticks.
--
-- KEYS[1]  waiting zset   KEYS[2] polled zset   KEYS[3] active zset   KEYS[4] bucket hash
-- KEYS[5]  listed marker (refreshed: the worker visits this queue)
-- ARGV[1]  rate per second   ARGV[2] max active (0 = none)   ARGV[3] active ttl ms
-- ARGV[4]  idle ms   ARGV[5] retention ms of ended records   ARGV[6] token record key prefix
-- ARGV[7]  user index key prefix   ARGV[8] marker ttl ms
-- returns  {waiting count, active count, admitted {token, user, ...}, expired {token, user, ...},
--           dropped {token, user, ...}, active expiry ms of this tick's admissions}
local now = now_ms()
local rate, cap, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local idle, keep, rec, uidx = tonumber(ARGV[4]), ARGV[5], ARGV[6], ARGV[7]
local LIMIT = 5000 -- per step and tick, so one tick stays short

-- Ends a token that is still `from` (a token a payment already PROCESSED keeps
-- its status; it only leaves the set it was in). Returns the user of an ended
-- token, or '' when nothing ended (the caller then reports nothing).
local function finish(token, from)
  local key = rec .. token
  local r = redis.call('HMGET', key, T_USER, T_STATUS)
  local user = r[1]
  if user and r[2] == from then
    redis.call('HSET', key, T_STATUS, EXPIRED)
    redis.call('PEXPIRE', key, keep)
    if redis.call('GET', uidx .. user) == token then
      redis.call('DEL', uidx .. user)
    end
    return user
  end
  return ''
end

local expired = {}
for _, token in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, LIMIT)) do
  redis.call('ZREM', KEYS[3], token)
  expired[#expired + 1] = token
  expired[#expired + 1] = finish(token, ACTIVE)
end

local dropped = {}
for _, token in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - idle, 'LIMIT', 0, LIMIT)) do
  redis.call('ZREM', KEYS[2], token)
  redis.call('ZREM', KEYS[1], token)
  dropped[#dropped + 1] = token
  dropped[#dropped + 1] = finish(token, WAITING)
end

local b = redis.call('HMGET', KEYS[4], 'tokens', 'at')
local tokens = tonumber(b[1]) or rate
local at = tonumber(b[2]) or now
tokens = math.min(rate, tokens + math.max(0, now - at) * rate / 1000)

local active = redis.call('ZCARD', KEYS[3])
local n = math.floor(tokens)
if cap > 0 then
  n = math.min(n, cap - active)
end
n = math.min(n, LIMIT)
local admitted = {}
if n > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[1], n)
  local until_ms = now + ttl
  for i = 1, #popped, 2 do
    local token = popped[i]
    local key = rec .. token
    redis.call('ZREM', KEYS[2], token)
    local user = redis.call('HGET', key, T_USER)
    if user then
      redis.call('HSET', key, T_STATUS, ACTIVE, T_ADMITTED, now, T_EXPIRES, until_ms)
      redis.call('PEXPIRE', key, ttl + tonumber(keep))
      redis.call('PEXPIRE', uidx .. user, ttl)
      redis.call('ZADD', KEYS[3], until_ms, token)
      admitted[#admitted + 1] = token
      admitted[#admitted + 1] = user
    end
  end
  tokens = tokens - #admitted / 2
end
redis.call('HSET', KEYS[4], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[4], 3600000)
redis.call('SET', KEYS[5], 1, 'PX', ARGV[8])

return {redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[3]), admitted, expired, dropped, now + ttl}
