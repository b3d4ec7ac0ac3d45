-- queue_leave.lua: the owner gives up a token: it leaves the waiting room (its
-- place, or the pre-queue) or frees its active slot at once, and reads as
-- EXPIRED from then on. Giving up a live token also releases the user's pending
-- holds in the concert (API.md), but for a hold whose payment is in flight: that
-- one ends as its payment does.
--
-- KEYS[1]  token reference 'tag#seq#check' (see token_ref in lib.lua)
-- KEYS[2]  waiting bitmap   KEYS[3] active zset   KEYS[4] user's holds zset
-- KEYS[5]  room hash   KEYS[6] pre-queue zset
-- ARGV[1]  user id   ARGV[2] retention ms of an ended record
-- returns  nil when unknown or another user's; else {status letter it had,
--          holds released}
local r = rec_of(KEYS[1], ARGV[1])
if not r then
  return nil
end
local had = r.status
local tag = r.tag
local released = 0
if had == WAITING or had == ACTIVE then
  -- Without its room (a flush) a token can only be in the sets named here; the
  -- admission tick skips a token that is no longer WAITING anyway.
  unqueue(tag, room_hot(KEYS[5]), KEYS[2], KEYS[6], r.seq)
  redis.call('ZREM', KEYS[3], digits(r.seq))
  r.status = EXPIRED
  rec_put(r, tonumber(ARGV[2]))
  user_forget(tag, r.user, r.seq)
  local now = now_ms()
  for _, rid in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
    local rec = reservation_key(tag, rid)
    local h = redis.call('HMGET', rec, R_SCHEDULE, R_INDEX, R_STATE, R_PAYING)
    if h[3] == PENDING and not paying(h[4], now) then
      released = released + release_seat(tag, h[1], h[2], rid)
      redis.call('HSET', rec, R_STATE, CANCELED)
      redis.call('ZREM', KEYS[4], rid)
    end
  end
end
return {had, released}
