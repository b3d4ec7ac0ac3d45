-- sold_mark.lua: marks sales SOLD in a schedule's bitmap, from Postgres (the
-- rebuild after Redis lost data, and the periodic catch-up of sales whose Redis
-- update never ran). Only ever sets: a sale is never undone here. A reservation
-- record still in Redis reads CONFIRMED, and its seat's claim is dropped.
--
-- KEYS[1]  sold bitmap   KEYS[2] held zset   KEYS[3] held bitmap
-- ARGV[1]  concert tag   ARGV[2] schedule id, then pairs: seat index, reservation id
-- returns  how many seats were not marked yet
local fresh = 0
for i = 3, #ARGV, 2 do
  local idx, rid = ARGV[i], ARGV[i + 1]
  if redis.call('SETBIT', KEYS[1], idx, 1) == 0 then
    fresh = fresh + 1
  end
  local rec = reservation_key(ARGV[1], rid)
  local r = redis.call('HMGET', rec, R_USER, R_STATE)
  if r[1] and r[2] ~= CONFIRMED then
    redis.call('HSET', rec, R_STATE, CONFIRMED)
    redis.call('HDEL', rec, R_PAYING, R_NONCE)
    redis.call('ZREM', user_holds_key(ARGV[1], r[1]), rid)
    local hold = hold_key(ARGV[1], ARGV[2], idx)
    if redis.call('GET', hold) == rid then
      redis.call('DEL', hold)
      unmark_held(KEYS[2], KEYS[3], idx)
    end
  end
end
return fresh
