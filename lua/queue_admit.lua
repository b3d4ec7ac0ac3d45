-- queue_admit.lua: one admission tick of one concert's waiting room, atomic.
--  1. the pre-queue closes if opens_at has come (open_if_due in lib.lua);
--  2. the room's seats are counted (seats left and sold: the state the next
--     answers show, e.g. SOLD_OUT);
--  3. ACTIVE tokens past their expiry end (EXPIRED) and free their slots;
--  4. WAITING tokens not polled for the room's idle window leave (EXPIRED):
--     once an epoch (see mark_poll in lib.lua) those placed by arrival are
--     found with a few BITOPs; a token in a pre-queue is checked when its turn
--     comes;
--  5. if the room is OPEN and some seat is AVAILABLE (or it has no schedule),
--     the tokens at the head of the queue become ACTIVE, as many as the token
--     bucket allows (the room's rate per second, at most one second's worth
--     saved up) and never past the room's cap of live ACTIVE tokens (0 = none).
-- The settings are the room's (its hash), and the bucket lives here, in Redis,
-- so the rate holds whichever server ticks and a change applies at this tick.
--
-- KEYS[1]  waiting bitmap   KEYS[2] active zset   KEYS[3] bucket hash
-- KEYS[4]  listed marker (refreshed: the worker visits this queue)   KEYS[5] room hash
-- KEYS[6]  pre-queue zset   KEYS[7] arrival counter   KEYS[8] scratch key
-- ARGV[1]  retention ms of ended records   ARGV[2] marker ttl ms   ARGV[3] concert tag
-- returns  {'noroom'} | {'ok', waiting count, active count, admitted {token, user, ...},
--           expired {token, user, ...}, dropped {token, user, ...},
--           active expiry ms of this tick's admissions, room version, room's
--           schedules, holds tidied, room view (see render_view)}
--          (tokens as 'seq#check': see token_name in lib.lua)
local now = now_ms()
local room = room_get(KEYS[5])
if not room then
  return {'noroom'}
end
local tag = ARGV[3]
local w, active_set, scratch = KEYS[1], KEYS[2], KEYS[8]
local keep = tonumber(ARGV[1])
local LIMIT = 5000 -- per step and tick, so one tick stays short

open_if_due(tag, room, KEYS[6], KEYS[7], now)
local lapsed = recount(tag, room, scratch, now)

-- Ends the token of arrival number `seq` if it is still `from` (a token a
-- payment already PROCESSED keeps its status). Adds it to `list` as
-- {token, user} when it ended.
local function finish(seq, from, list)
  local r = rec_get(tag, seq)
  if r and r.status == from then
    r.status = EXPIRED
    rec_put(r, keep)
    user_forget(tag, r.user, seq)
    list[#list + 1] = token_name(r)
    list[#list + 1] = r.user
  end
end

local expired = {}
for _, seq in ipairs(redis.call('ZRANGEBYSCORE', active_set, '-inf', now, 'LIMIT', 0, LIMIT)) do
  redis.call('ZREM', active_set, seq)
  finish(tonumber(seq), ACTIVE, expired)
end

-- The idle sweep: once an epoch, the tokens placed by arrival with no poll mark
-- in the last POLL_EPOCHS epochs and this one. The first sweep after the idle
-- window changed (the epoch length with it) waits a whole window, so every
-- token has had time to leave marks under the new length.
local e = poll_epoch(room.idle)
local k = math.floor(now / e)
local counts = w .. ':n'
local sweep = redis.call('HMGET', counts, 'epoch', 'swept')
local swept = tonumber(sweep[2]) or -1
if not sweep[1] then
  -- A new queue: every mark it has is under this length.
  swept = k - 1
  redis.call('HSET', counts, 'epoch', digits(e), 'swept', digits(swept))
elseif tonumber(sweep[1]) ~= e then
  swept = k + POLL_EPOCHS
  redis.call('HSET', counts, 'epoch', digits(e), 'swept', digits(swept))
end
-- The marks are trusted once no such wait runs (it keeps `swept` ahead).
local settled = swept <= k
local recent = {}
for j = k - POLL_EPOCHS, k do
  recent[#recent + 1] = poll_key(tag, e, j)
end
-- Whether `seq` has polled within the idle window (true when unsure).
local function lively(seq)
  if not settled then
    return true
  end
  for _, key in ipairs(recent) do
    if redis.call('GETBIT', key, seq) == 1 then
      return true
    end
  end
  return false
end

local dropped = {}
if settled and swept < k then
  local len = redis.call('STRLEN', w)
  local done = true
  if len > 0 then
    redis.call('BITOP', 'OR', scratch, unpack(recent))
    if redis.call('STRLEN', scratch) < len then
      redis.call('SETBIT', scratch, len * 8 - 1, 0)
    end
    redis.call('BITOP', 'NOT', scratch, scratch)
    redis.call('BITOP', 'AND', scratch, scratch, w)
    local from = tonumber(redis.call('HGET', counts, 'head')) or 0
    local n = 0
    while true do
      local seq = redis.call('BITPOS', scratch, 1, from, -1, 'BIT')
      if seq < 0 then
        break
      end
      if n >= LIMIT then
        done = false -- the rest next tick
        break
      end
      w_del(w, seq)
      finish(seq, WAITING, dropped)
      n = n + 1
      from = seq + 1
    end
    redis.call('DEL', scratch)
  end
  if done then
    redis.call('HSET', counts, 'swept', digits(k))
  end
end

local rate, cap, ttl = room.rate, room.cap, room.ttl
local b = redis.call('HMGET', KEYS[3], 'tokens', 'at')
local tokens = tonumber(b[1]) or rate
local at = tonumber(b[2]) or now
tokens = math.min(rate, tokens + math.max(0, now - at) * rate / 1000)

local active = redis.call('ZCARD', active_set)
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
  for _, seq in ipairs(pop_head(tag, room, w, n)) do
    local r = rec_get(tag, seq)
    if r and r.status == WAITING then
      if lively(seq) then
        r.status, r.admitted, r.expires = ACTIVE, now, until_ms
        rec_put(r, ttl + keep)
        keep_for(user_key(tag, r.user), ttl)
        redis.call('ZADD', active_set, until_ms, digits(seq))
        admitted[#admitted + 1] = token_name(r)
        admitted[#admitted + 1] = r.user
      else
        finish(seq, WAITING, dropped)
      end
    end
  end
  tokens = tokens - #admitted / 2
end
redis.call('HSET', KEYS[3], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[3], 3600000)
redis.call('SET', KEYS[4], 1, 'PX', ARGV[2])

local waiting = placed_count(tag, room, w) + redis.call('ZCARD', KEYS[6])
return {'ok', waiting, redis.call('ZCARD', active_set), admitted, expired, dropped,
  now + ttl, room.v, room.n, lapsed, room.view}
