-- queue_join.lua: put a user in a concert's waiting room, or return the user's
-- live (WAITING or ACTIVE) token there. A user never holds two places. Before
-- the room opens (opens_at in the future) a new token goes to the pre-queue
-- with the random score it was given; otherwise it is placed by arrival.
--
-- KEYS[1]  user index      {c}:user:<user>   -> token
-- KEYS[2]  new token record {c}:tok:<token>  (hash: see token_field in codes.rs)
-- KEYS[3]  waiting zset    token -> arrival number
-- KEYS[4]  polled zset     token -> last poll ms
-- KEYS[5]  arrival counter
-- KEYS[6]  active zset     token -> expiry ms
-- KEYS[7]  listed marker   present while the admission worker visits this queue
-- KEYS[8]  room hash
-- KEYS[9]  pre-queue zset  token -> random score
-- KEYS[10] the user's join rate limit {c}:rl:join:<user> (see rate_wait in lib.lua)
-- ARGV[1]  new token   ARGV[2] user id   ARGV[3] retention ms of an ended record
-- ARGV[4]  token record key prefix ({c}:tok:), to read the existing token's record
-- ARGV[5]  marker ttl ms   ARGV[6] concert tag   ARGV[7] the new token's pre-queue score
-- ARGV[8]  rate limit interval ms (0 = off)   ARGV[9] rate limit burst
-- returns  {'limited', ms to wait} (over the user's rate: nothing changed)
--          | {'noroom'} | {'soldout'} (no live token, and no seat left to sell)
--          | {'ok', created 0/1, token, status, position|0, expected position|0,
--             expires_ms|0, active count, needs listing 0/1, joined ms,
--             arrival number of a new token|0, room view (see render_view)}
-- "needs listing": the worker is not known to visit this queue; the caller adds
-- the concert to the worker's set. The marker is set here and refreshed by every
-- admission tick, so a listing that failed is retried by the next join or poll.
local now = now_ms()
local wait = rate_wait(KEYS[10], now, ARGV[8], ARGV[9])
if wait > 0 then
  return {'limited', wait}
end
local room = room_hot(KEYS[8])
if not room then
  return {'noroom'}
end
local tag = ARGV[6]
open_if_due(tag, room, KEYS[9], KEYS[5], now)
local ttl = room.idle + tonumber(ARGV[3])

local function needs_listing()
  if redis.call('EXISTS', KEYS[7]) == 1 then
    return 0
  end
  redis.call('SET', KEYS[7], 1, 'PX', ARGV[5])
  return 1
end

local function answer(created, token, status, position, expected, expires, joined, arrival)
  return {'ok', created, token, status, position or 0, expected or 0, expires,
    redis.call('ZCARD', KEYS[6]), needs_listing(), joined, arrival, view_now(room, now)}
end

local existing = redis.call('GET', KEYS[1])
if existing then
  local rec = ARGV[4] .. existing
  local r = redis.call('HMGET', rec, T_STATUS, T_EXPIRES, T_JOINED)
  if r[1] == WAITING then
    local position, where = place(tag, room, KEYS[3], KEYS[9], existing)
    if where then
      -- joining again counts as a poll
      redis.call('ZADD', KEYS[4], now, existing)
      redis.call('PEXPIRE', rec, ttl)
      redis.call('PEXPIRE', KEYS[1], ttl)
      local expected = nil
      if where == 'prequeue' then
        expected = expected_place(tag, room, KEYS[3], KEYS[9])
      end
      return answer(0, existing, WAITING, position, expected, 0, tonumber(r[3]), 0)
    end
  elseif r[1] == ACTIVE and tonumber(r[2]) > now then
    return answer(0, existing, ACTIVE, nil, nil, tonumber(r[2]), tonumber(r[3]), 0)
  end
end

if view_state(room.view) == ROOM_SOLD_OUT then
  return {'soldout'}
end
local seq = redis.call('INCR', KEYS[5])
redis.call('HSET', KEYS[2], T_USER, ARGV[2], T_STATUS, WAITING, T_JOINED, now)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZADD', KEYS[4], now, ARGV[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
if room.opens > now then
  enter_prequeue(room, KEYS[9], ARGV[1], ARGV[7])
  return answer(1, ARGV[1], WAITING, nil, expected_place(tag, room, KEYS[3], KEYS[9]), 0, now, seq)
end
redis.call('ZADD', KEYS[3], seq, ARGV[1])
return answer(1, ARGV[1], WAITING, (place(tag, room, KEYS[3], KEYS[9], ARGV[1])), nil, 0, now, seq)
