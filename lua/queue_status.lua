-- queue_status.lua: read a token for its owner; a read of a WAITING token counts
-- as a poll (it keeps the token from being dropped as idle).
--
-- KEYS[1]  token record   KEYS[2] waiting zset   KEYS[3] polled zset   KEYS[4] active zset
-- KEYS[5]  user index   KEYS[6] listed marker (see queue_join.lua)
-- ARGV[1]  token   ARGV[2] user id   ARGV[3] waiting record ttl ms   ARGV[4] marker ttl ms
-- returns  nil when unknown or another user's; else
--          {status letter, position|0, expires ms|0, active count, needs listing 0/1}
local r = redis.call('HMGET', KEYS[1], T_USER, T_STATUS, T_EXPIRES)
if not r[1] or r[1] ~= ARGV[2] then
  return nil
end
local now = now_ms()
local status = r[2]
if status == WAITING then
  local rank = redis.call('ZRANK', KEYS[2], ARGV[1])
  if rank then
    local ttl = tonumber(ARGV[3])
    redis.call('ZADD', KEYS[3], now, ARGV[1])
    redis.call('PEXPIRE', KEYS[1], ttl)
    redis.call('PEXPIRE', KEYS[5], ttl)
    local listing = 0
    if redis.call('EXISTS', KEYS[6]) == 0 then
      redis.call('SET', KEYS[6], 1, 'PX', ARGV[4])
      listing = 1
    end
    return {WAITING, rank + 1, 0, redis.call('ZCARD', KEYS[4]), listing}
  end
  status = EXPIRED
elseif status == ACTIVE then
  if tonumber(r[3]) > now then
    return {ACTIVE, 0, tonumber(r[3]), 0, 0}
  end
  -- expired, and the admission tick has not tidied it yet
  status = EXPIRED
end
return {status, 0, 0, 0, 0}
