-- hold.lua: take a seat for a user, atomically, in API.md's order: the queue
-- pass, then the seat is neither SOLD nor HELD, then the user's hold limit in the
-- concert; then the hold is taken with SET NX PXAT and indexed. The hold's
-- length and the limit are the room's (its hash), as they are at this moment.
--
-- KEYS[1]  token reference (lib.lua token_ref)   KEYS[2] sold bitmap   KEYS[3] held zset   KEYS[4] the seat's hold
-- KEYS[5]  user's holds zset   KEYS[6] reservation record   KEYS[7] held bitmap
-- KEYS[8]  room hash   KEYS[9] the user's hold rate limit {c}:rl:hold:<user> (lib.lua's rate_wait)
-- ARGV[1]  user id   ARGV[2] seat index   ARGV[3] reservation id
-- ARGV[4]  record retention ms after expiry   ARGV[5] schedule id   ARGV[6] seat_no
-- ARGV[7]  seat id   ARGV[8] price   ARGV[9] rate limit interval ms (0 = off)
-- ARGV[10] rate limit burst
-- returns  {verdict, expires ms (the room's hold limit with 'limit'), lapsed holds tidied}
--          verdict: 'ok' | 'taken' | 'limit' | 'noroom' | a gate verdict
--          | 'limited' (over the user's rate, checked first: nothing changed;
--          then the second item is the ms to wait)
local now = now_ms()
local wait = rate_wait(KEYS[9], now, ARGV[9], ARGV[10])
if wait > 0 then
  return {'limited', wait, 0}
end
-- The seat index as a canonical integer (a caller may pad it with zeros).
local idx = tostring(tonumber(ARGV[2]))
local g = gate(KEYS[1], ARGV[1], now)
if g ~= 'ok' then
  return {g, 0, 0}
end
local room = redis.call('HMGET', KEYS[8], RM_HOLD, RM_HOLDS)
if not room[1] then
  return {'noroom', 0, 0}
end
local hold_ms, max_holds = tonumber(room[1]), tonumber(room[2])
-- Holds that lapsed: their keys are gone already; tidy the index and bitmap.
local lapsed = tidy_lapsed(KEYS[3], KEYS[7], now, 100)
if redis.call('GETBIT', KEYS[2], idx) == 1 or redis.call('EXISTS', KEYS[4]) == 1 then
  return {'taken', 0, lapsed}
end
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. now)
if redis.call('ZCARD', KEYS[5]) >= max_holds then
  return {'limit', max_holds, lapsed}
end
local expires = now + hold_ms
if not redis.call('SET', KEYS[4], ARGV[3], 'NX', 'PXAT', expires) then
  return {'taken', 0, lapsed}
end
redis.call('ZADD', KEYS[3], expires, idx)
redis.call('SETBIT', KEYS[7], idx, 1)
redis.call('ZADD', KEYS[5], expires, ARGV[3])
redis.call('PEXPIREAT', KEYS[5], expires)
redis.call('HSET', KEYS[6], R_USER, ARGV[1], R_SCHEDULE, ARGV[5], R_INDEX, idx,
  R_SEAT_NO, ARGV[6], R_SEAT_ID, ARGV[7], R_PRICE, ARGV[8], R_EXPIRES, expires,
  R_STATE, PENDING)
redis.call('PEXPIREAT', KEYS[6], expires + tonumber(ARGV[4]))
return {'ok', expires, lapsed}
