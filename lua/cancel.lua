-- cancel.lua: the owner releases a PENDING hold. The reservation reads as
-- CANCELED from then on (until its record's retention ends).
--
-- KEYS[1]  reservation record   KEYS[2] user's holds zset
-- ARGV[1]  user id   ARGV[2] reservation id   ARGV[3] concert tag
-- ARGV[4]  '1' to cancel although a payment of it began and its claim ended (the
--          caller has seen that Postgres has no sale of it)
-- returns  'missing' (unknown or another user's) | 'confirmed' | 'paying' (a payment
--          of it is in flight) | 'check' (a payment began and its claim ended:
--          whether it committed is Postgres's to say) | 'released' (a live hold
--          was freed) | 'ok' (it had lapsed or was cancelled already)
local r = redis.call('HMGET', KEYS[1], R_USER, R_SCHEDULE, R_INDEX, R_STATE, R_PAYING)
if not r[1] or r[1] ~= ARGV[1] then
  return 'missing'
end
if r[4] == CONFIRMED then
  return 'confirmed'
end
if r[4] == PENDING and r[5] then
  if paying(r[5], now_ms()) then
    return 'paying'
  end
  if ARGV[4] ~= '1' then
    return 'check'
  end
end
local freed = 0
if r[4] == PENDING then
  freed = release_seat(ARGV[3], r[2], r[3], ARGV[2])
  redis.call('HSET', KEYS[1], R_STATE, CANCELED)
  redis.call('ZREM', KEYS[2], ARGV[2])
end
if freed == 1 then
  return 'released'
end
return 'ok'
