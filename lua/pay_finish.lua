-- pay_finish.lua: a payment committed in Postgres. The seat becomes SOLD, the
-- hold is dropped, the reservation reads CONFIRMED; when the user has no pending
-- hold left in the concert, the queue token becomes PROCESSED and frees its
-- active slot at once.
--
-- KEYS[1]  reservation record   KEYS[2] sold bitmap   KEYS[3] held zset
-- KEYS[4]  the seat's hold   KEYS[5] user's holds zset
-- KEYS[6]  token reference 'tag#seq#check' (see token_ref in lib.lua)
-- KEYS[7]  active zset   KEYS[8] held bitmap
-- ARGV[1]  reservation id   ARGV[2] seat index   ARGV[3] user id
-- ARGV[4]  retention ms of an ended token record
-- returns  1 when the token became PROCESSED, else 0
redis.call('SETBIT', KEYS[2], ARGV[2], 1)
if redis.call('GET', KEYS[4]) == ARGV[1] then
  redis.call('DEL', KEYS[4])
  unmark_held(KEYS[3], KEYS[8], ARGV[2])
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], R_STATE, CONFIRMED)
  redis.call('HDEL', KEYS[1], R_PAYING, R_NONCE)
end
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. now_ms())
if redis.call('ZCARD', KEYS[5]) > 0 then
  return 0
end
local token = rec_of(KEYS[6], ARGV[3])
if not token or token.status ~= ACTIVE then
  return 0
end
token.status = PROCESSED
rec_put(token, tonumber(ARGV[4]))
redis.call('ZREM', KEYS[7], digits(token.seq))
user_forget(token.tag, token.user, token.seq)
return 1
