-- lib.lua: helpers shared by every script. The service sends each script as
-- one text: the generated prelude of codes (status letters and record field
-- names: WAITING, T_STATUS, R_STATE, ...; src/store/scripts/codes.rs), this
-- file, then the script's own file (src/store/scripts/mod.rs). So each script
-- stays one EVALSHA and one round trip.

-- Redis's clock, in milliseconds.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The queue pass, in API.md's order: unknown or another user's, then expired or
-- processed, then still waiting. The caller has checked the token's concert.
-- Returns 'ok' | 'invalid' | 'expired' | 'waiting'.
local function gate(token_key, user, now)
  local r = redis.call('HMGET', token_key, T_USER, T_STATUS, T_EXPIRES)
  if not r[1] or r[1] ~= user then
    return 'invalid'
  end
  if r[2] == WAITING then
    return 'waiting'
  end
  if r[2] == ACTIVE and tonumber(r[3]) > now then
    return 'ok'
  end
  return 'expired'
end

-- The hold of seat `idx` of schedule `sched`, the schedule's HELD index and
-- bitmap, and a reservation record, spelled as src/store/keys.rs spells them
-- (same concert tag, same slot).
local function hold_key(tag, sched, idx)
  return tag .. ':s:' .. sched .. ':h:' .. idx
end
local function held_key(tag, sched)
  return tag .. ':s:' .. sched .. ':held'
end
local function held_bits_key(tag, sched)
  return tag .. ':s:' .. sched .. ':heldbits'
end
local function reservation_key(tag, rid)
  return tag .. ':r:' .. rid
end
local function user_holds_key(tag, user)
  return tag .. ':uh:' .. user
end

-- Whether a payment of the reservation whose record field R_PAYING is `pay` is in
-- flight (pay_begin.lua notes it; pay_abort.lua and pay_finish.lua clear it).
local function paying(pay, now)
  return pay and tonumber(pay) > now
end

-- Takes seat `idx` out of the HELD index and bitmap.
local function unmark_held(held, held_bits, idx)
  redis.call('ZREM', held, idx)
  redis.call('SETBIT', held_bits, idx, 0)
end

-- Holds lapse by themselves (their keys expire); this tidies the HELD index
-- and bitmap after them, at most `limit` per call (a sweep runs with every
-- hold and seat map, so it keeps pace). Returns how many it tidied.
local function tidy_lapsed(held, held_bits, now, limit)
  local lapsed = redis.call('ZRANGEBYSCORE', held, '-inf', '(' .. now, 'LIMIT', 0, limit)
  for _, idx in ipairs(lapsed) do
    unmark_held(held, held_bits, idx)
  end
  return #lapsed
end

-- Frees the seat of reservation `rid` if that reservation still holds it (a
-- lapsed hold may already have been taken by someone else: left alone).
-- Returns 1 when it freed the seat, else 0.
local function release_seat(tag, sched, idx, rid)
  local hold = hold_key(tag, sched, idx)
  if redis.call('GET', hold) == rid then
    redis.call('DEL', hold)
    unmark_held(held_key(tag, sched), held_bits_key(tag, sched), idx)
    return 1
  end
  return 0
end
