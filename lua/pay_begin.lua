-- pay_begin.lua: a payment starts. The reservation must be the user's (else it
-- does not exist for them), the queue pass must hold, the hold must be PENDING,
-- not past its expiry and still own the seat. Then the seat's claim is extended
-- by the payment grace, so no one can take the seat while the money moves; the
-- reservation's own expiry is unchanged (pay_abort.lua puts the claim back to it
-- if the payment fails). The record notes the payment (R_PAYING = claim end,
-- R_NONCE = this payment's nonce), so a cancel or a queue leave does not release a seat
-- whose money is moving, and only the latest payment's failure undoes the claim.
--
-- KEYS[1]  token reference (lib.lua token_ref)   KEYS[2] reservation record
-- ARGV[1]  user id   ARGV[2] reservation id   ARGV[3] grace ms   ARGV[4] concert tag
-- ARGV[5]  this payment's nonce
-- returns  {'missing'} | {gate verdict} | {'paid'} | {'lapsed'}
--          | {'ok', schedule id, seat index, seat_no, seat id, price, expires ms}
local r = redis.call('HMGET', KEYS[2], R_USER, R_SCHEDULE, R_INDEX, R_SEAT_NO, R_SEAT_ID,
  R_PRICE, R_EXPIRES, R_STATE)
if not r[1] or r[1] ~= ARGV[1] then
  return {'missing'}
end
local now = now_ms()
local g = gate(KEYS[1], ARGV[1], now)
if g ~= 'ok' then
  return {g}
end
if r[8] == CONFIRMED then
  return {'paid'}
end
local hold = hold_key(ARGV[4], r[2], r[3])
if r[8] ~= PENDING or tonumber(r[7]) < now or redis.call('GET', hold) ~= ARGV[2] then
  return {'lapsed'}
end
local claim = now + tonumber(ARGV[3])
if claim > tonumber(r[7]) then
  redis.call('PEXPIREAT', hold, claim, 'GT')
  redis.call('ZADD', held_key(ARGV[4], r[2]), 'GT', claim, r[3])
  redis.call('SETBIT', held_bits_key(ARGV[4], r[2]), r[3], 1)
end
redis.call('HSET', KEYS[2], R_PAYING, claim, R_NONCE, ARGV[5])
return {'ok', r[2], r[3], r[4], r[5], r[6], r[7]}
