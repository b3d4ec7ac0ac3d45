-- queue_admit.lua: one admission tick of one concert's waiting room, atomic.
--  1. the pre-queue closes if opens_at has come (open_if_due in lib.lua);
--  2. the room's seats are counted (seats left and sold: the state the next
--     answers show, e.g. SOLD_OUT);
--  3. ACTIVE tokens past their expiry end (EXPIRED) and free their slots;
--  4. WAITING tokens not polled for the room's idle window leave (EXPIRED);
--  5. if the room is OPEN and some seat is AVAILABLE (or it has no schedule),
--     the tokens at the head of the queue become ACTIVE, as many as the token
--     bucket allows (the room's rate per second, at most one second's worth
--     saved up) and never past the room's cap of live ACTIVE tokens (0 = none).
-- The settings are the room's (its hash), and the bucket lives here, in Redis,
-- so the rate holds whichever server ticks and a change applies at this tick.
--
-- KEYS[1]  waiting zset   KEYS[2] polled zset   KEYS[3] active zset   KEYS[4] bucket hash
-- KEYS[5]  listed marker (refreshed: the worker visits this queue)   KEYS[6] room hash
-- KEYS[7]  pre-queue zset   KEYS[8] arrival counter   KEYS[9] scratch key
-- ARGV[1]  retention ms of ended records   ARGV[2] token record key prefix
-- ARGV[3]  user index key prefix   ARGV[4] marker ttl ms   ARGV[5] concert tag
-- returns  {'noroom'} | {'ok', waiting count, active count, admitted {token, user, ...},
--           expired {token, user, ...}, dropped {token, user, ...},
--           active expiry ms of this tick's admissions, room version, room's
--           schedules, holds tidied, room view (see render_view)}
local now = now_ms()
local room = room_get(KEYS[6])
if not room then
  return {'noroom'}
end
local tag = ARGV[5]
local keep, rec, uidx = ARGV[1], ARGV[2], ARGV[3]
local LIMIT = 5000 -- per step and tick, so one tick stays short

open_if_due(tag, room, KEYS[7], KEYS[8], now)
local lapsed = recount(tag, room, KEYS[9], now)

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
for _, token in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - room.idle, 'LIMIT', 0, LIMIT)) do
  redis.call('ZREM', KEYS[2], token)
  unqueue(tag, room, KEYS[1], KEYS[7], token)
  dropped[#dropped + 1] = token
  dropped[#dropped + 1] = finish(token, WAITING)
end

local rate, cap, ttl = room.rate, room.cap, room.ttl
local b = redis.call('HMGET', KEYS[4], 'tokens', 'at')
local tokens = tonumber(b[1]) or rate
local at = tonumber(b[2]) or now
tokens = math.min(rate, tokens + math.max(0, now - at) * rate / 1000)

local active = redis.call('ZCARD', KEYS[3])
local n = math.floor(tokens)
if cap > 0 then
  n = math.min(n, cap - active)
end
if room_state(room, now) ~= ROOM_OPEN or (room.total > 0 and room.left <= 0) then
  n = 0
end
n = math.min(n, LIMIT)
local admitted = {}
if n > 0 then
  local until_ms = now + ttl
  for _, token in ipairs(pop_head(tag, room, KEYS[1], n)) do
    local key = rec .. token
    redis.call('ZREM', KEYS[2], token)
    local r = redis.call('HMGET', key, T_USER, T_STATUS)
    local user = r[1]
    if user and r[2] == WAITING then
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
redis.call('SET', KEYS[5], 1, 'PX', ARGV[4])

local waiting = placed_count(tag, room, KEYS[1]) + redis.call('ZCARD', KEYS[7])
return {'ok', waiting, redis.call('ZCARD', KEYS[3]), admitted, expired, dropped,
  now + ttl, room.v, room.n, lapsed, room.view}
