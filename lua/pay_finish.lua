-- pay_finish.lua: a payment committed in Postgres. The seat becomes SOLD, the
-- hold is dropped, the reservation reads CONFIRMED; when the user has no pending
-- hold left in the concert, the queue token becomes PROCESSED and frees its
-- active slot at once.
--
-- KEYS[1]  reservation record   KEYS[2] sold bitmap   KEYS[3] held zset
-- KEYS[4]  the seat's hold   KEYS[5] user's holds zset   KEYS[6] token record
-- KEYS[7]  active zset   KEYS[8] user -> live token index   KEYS[9] held bitmap
-- ARGV[1]  reservation id   ARGV[2] seat index   ARGV[3] token
-- ARGV[4]  retention ms of an ended token record
-- returns  1 when the token became PROCESSED, else 0
redis.call('SETBIT', KEYS[2], ARGV[2], 1)
if redis.call('GET', KEYS[4]) == ARGV[1] then
  redis.call('DEL', KEYS[4])
  unmark_held(KEYS[3], KEYS[9], ARGV[2])
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], R_STATE, CONFIRMED)
  redis.call('HDEL', KEYS[1], R_PAYING, R_NONCE)
end
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. now_ms())
if redis.call('ZCARD', KEYS[5]) > 0 or redis.call('HGET', KEYS[6], T_STATUS) ~= ACTIVE then
  return 0
end
redis.call('HSET', KEYS[6], T_STATUS, PROCESSED)
redis.call('PEXPIRE', KEYS[6], ARGV[4])
redis.call('ZREM', KEYS[7], ARGV[3])
if redis.call('GET', KEYS[8]) == ARGV[3] then
  redis.call('DEL', KEYS[8])
end
return 1
