-- pay_abort.lua: a payment failed and wrote nothing (the balance was short, or
-- the seat turned out sold under another reservation): unless a later payment
-- of the same reservation has begun since, the seat's claim goes back to the
-- hold's own expiry, or is freed if that has passed.
--
-- KEYS[1]  reservation record
-- ARGV[1]  reservation id   ARGV[2] concert tag   ARGV[3] the payment's nonce
local r = redis.call('HMGET', KEYS[1], R_SCHEDULE, R_INDEX, R_EXPIRES, R_STATE, R_NONCE)
if r[4] ~= PENDING or r[5] ~= ARGV[3] then
  return 0
end
-- R_PAYING ends now rather than going: an earlier payment of the same reservation
-- may still be in flight, so cancels and reads keep asking Postgres.
local now = now_ms()
redis.call('HSET', KEYS[1], R_PAYING, now)
local hold = hold_key(ARGV[2], r[1], r[2])
if redis.call('GET', hold) ~= ARGV[1] then
  return 0
end
local expires = tonumber(r[3])
if expires >= now then
  redis.call('PEXPIREAT', hold, expires)
  redis.call('ZADD', held_key(ARGV[2], r[1]), 'XX', expires, r[2])
else
  release_seat(ARGV[2], r[1], r[2], ARGV[1])
end
return 1
