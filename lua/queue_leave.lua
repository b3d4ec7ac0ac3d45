-- queue_leave.lua: the owner gives up a token: it leaves the waiting queue or
-- frees its active slot at once, and reads as EXPIRED from then on.
--
-- KEYS[1]  token record   KEYS[2] waiting zset   KEYS[3] polled zset   KEYS[4] active zset
-- KEYS[5]  user index
-- ARGV[1]  token   ARGV[2] user id   ARGV[3] retention ms of an ended record
-- returns  nil when unknown or another user's; else the status it had (W/A/X/P)
local r = redis.call('HMGET', KEYS[1], 'u', 's')
if not r[1] or r[1] ~= ARGV[2] then
  return nil
end
if r[2] == 'W' or r[2] == 'A' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('HSET', KEYS[1], 's', 'X')
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  if redis.call('GET', KEYS[5]) == ARGV[1] then
    redis.call('DEL', KEYS[5])
  end
end
return r[2]
