-- queue_join.lua: put a user in a concert's waiting room, or return the user's
-- live (WAITING or ACTIVE) token there. A user never holds two places. Before
-- the room opens (opens_at in the future) a new token goes to the pre-queue
-- with the random score it was given; otherwise it is placed by arrival.
-- Records, the user index and poll marks are built from the tag (lib.lua).
--
-- KEYS[1]  waiting bitmap (placed by arrival; counts in KEYS[1]:n)
-- KEYS[2]  arrival counter   KEYS[3] active zset  seq -> expiry ms
-- KEYS[4]  listed marker     present while the admission worker visits this queue
-- KEYS[5]  room hash         KEYS[6] pre-queue zset  seq -> random score
-- KEYS[7]  the user's join rate limit {c}:rl:join:<user> (see rate_wait in lib.lua)
-- ARGV[1]  the new token's check (random)   ARGV[2] user id
-- ARGV[3]  retention ms of an ended record   ARGV[4] marker ttl ms
-- ARGV[5]  concert tag   ARGV[6] the new token's pre-queue score
-- ARGV[7]  rate limit interval ms (0 = off)   ARGV[8] rate limit burst
-- returns  {'limited', ms to wait} (over the user's rate: nothing changed)
--          | {'noroom'} | {'soldout'} (no live token, and no seat left to sell)
--          | {'ok', created 0/1, token 'seq#check', status, position|0,
--             expected position|0, expires_ms|0, active count, needs listing 0/1,
--             joined ms, arrival number of a new token|0, room view (see render_view)}
-- "needs listing": the worker is not known to visit this queue; the caller adds
-- the concert to the worker's set. The marker is set here and refreshed by every
-- admission tick, so a listing that failed is retried by the next join or poll.
local now = now_ms()
local wait = rate_wait(KEYS[7], now, ARGV[7], ARGV[8])
if wait > 0 then
  return {'limited', wait}
end
local room = room_hot(KEYS[5])
if not room then
  return {'noroom'}
end
local tag, user = ARGV[5], ARGV[2]
local w, prequeue = KEYS[1], KEYS[6]
open_if_due(tag, room, prequeue, KEYS[2], now)
local ttl = waiting_ttl(room.idle, ARGV[3])

local function needs_listing()
  if redis.call('EXISTS', KEYS[4]) == 1 then
    return 0
  end
  redis.call('SET', KEYS[4], 1, 'PX', ARGV[4])
  return 1
end

local function answer(created, r, position, expected, arrival)
  local expires = 0
  if r.status == ACTIVE then
    expires = r.expires
  end
  return {'ok', created, token_name(r), r.status, position or 0, expected or 0, expires,
    redis.call('ZCARD', KEYS[3]), needs_listing(), r.joined, arrival, view_now(room, now)}
end

local ukey = user_key(tag, user)
local existing = tonumber(redis.call('HGET', ukey, user))
local r = existing and rec_get(tag, existing)
if r and r.user == user then
  if r.status == WAITING then
    local position, where = place(tag, room, w, prequeue, existing)
    if where then
      -- joining again counts as a poll
      if mark_poll(tag, room.idle, existing, now) then
        keep_for(r.key, ttl)
        keep_for(ukey, ttl)
      end
      local expected = nil
      if where == 'prequeue' then
        expected = expected_place(tag, room, w, prequeue)
      end
      return answer(0, r, position, expected, 0)
    end
  elseif r.status == ACTIVE and r.expires > now then
    return answer(0, r, nil, nil, 0)
  end
end

if view_state(room.view) == ROOM_SOLD_OUT then
  return {'soldout'}
end
local seq = redis.call('INCR', KEYS[2])
r = {key = rec_key(tag, seq), seq = seq, status = WAITING, user = user, check = ARGV[1],
  joined = now, expires = 0, admitted = 0}
rec_put(r, ttl)
redis.call('HSET', ukey, user, digits(seq))
keep_for(ukey, ttl)
mark_poll(tag, room.idle, seq, now)
if room.opens > now then
  enter_prequeue(room, prequeue, digits(seq), ARGV[6])
  return answer(1, r, nil, expected_place(tag, room, w, prequeue), seq)
end
-- The newest arrival number: every token placed is ahead of it.
return answer(1, r, placed_count(tag, room, w, w_add(w, seq)), nil, seq)
