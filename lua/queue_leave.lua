-- queue_leave.lua: the owner gives up a token: it leaves the waiting room (its
-- place, or the pre-queue) or frees its active slot at once, and reads as
-- EXPIRED from then on. Giving up a live token also releases the user's pending
-- holds in the concert (API.md), but for a hold whose payment is in flight: that
-- one ends as its payment does.
--
-- KEYS[1]  token record   KEYS[2] waiting zset   KEYS[3] polled zset   KEYS[4] active zset
-- KEYS[5]  user index   KEYS[6] user's holds zset   KEYS[7] room hash   KEYS[8] pre-queue zset
-- ARGV[1]  token   ARGV[2] user id   ARGV[3] retention ms of an ended record
-- ARGV[4]  concert tag (reservation records, seat holds and closed pre-queues are found from it)
-- returns  nil when unknown or another user's; else {status letter it had,
--          holds released}
local r = redis.call('HMGET', KEYS[1], T_USER, T_STATUS)
if not r[1] or r[1] ~= ARGV[2] then
  return nil
end
local released = 0
if r[2] == WAITING or r[2] == ACTIVE then
  -- Without its room (a flush) a token can only be in the sets named here; the
  -- admission tick skips a token that is no longer WAITING anyway.
  unqueue(ARGV[4], room_hot(KEYS[7]), KEYS[2], KEYS[8], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('HSET', KEYS[1], T_STATUS, EXPIRED)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  if redis.call('GET', KEYS[5]) == ARGV[1] then
    redis.call('DEL', KEYS[5])
  end
  local now = now_ms()
  for _, rid in ipairs(redis.call('ZRANGE', KEYS[6], 0, -1)) do
    local rec = reservation_key(ARGV[4], rid)
    local h = redis.call('HMGET', rec, R_SCHEDULE, R_INDEX, R_STATE, R_PAYING)
    if h[3] == PENDING and not paying(h[4], now) then
      released = released + release_seat(ARGV[4], h[1], h[2], rid)
      redis.call('HSET', rec, R_STATE, CANCELED)
      redis.call('ZREM', KEYS[6], rid)
    end
  end
end
return {r[2], released}
