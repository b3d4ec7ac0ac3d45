-- queue_join.lua: put a user in a concert's waiting queue, or return the user's
-- live (WAITING or ACTIVE) token there. A user never holds two places.
--
-- KEYS[1]  user index      {c}:user:<user>   -> token
-- KEYS[2]  new token record {c}:tok:<token>  (hash: see token_field in codes.rs)
-- KEYS[3]  waiting zset    token -> arrival seq
-- KEYS[4]  polled zset     token -> last poll ms
-- KEYS[5]  arrival counter
-- KEYS[6]  active zset     token -> expiry ms
-- KEYS[7]  listed marker   present while the admission worker visits this queue
-- ARGV[1]  new token   ARGV[2] user id   ARGV[3] waiting record ttl ms
-- ARGV[4]  token record key prefix ({c}:tok:), to read the existing token's record
-- ARGV[5]  marker ttl ms
-- returns  {created 0/1, token, status, position|0, expires_ms|0, active count,
--           needs listing 0/1, joined ms, arrival number of a new token|0}
-- "needs listing": the worker is not known to visit this queue; the caller adds
-- the concert to the worker's set. The marker is set here and refreshed by every
-- admission tick, so a listing that failed is retried by the next join or poll.
local now = now_ms()
local ttl = tonumber(ARGV[3])

local function needs_listing()
  if redis.call('EXISTS', KEYS[7]) == 1 then
    return 0
  end
  redis.call('SET', KEYS[7], 1, 'PX', ARGV[5])
  return 1
end

local existing = redis.call('GET', KEYS[1])
if existing then
  local rec = ARGV[4] .. existing
  local r = redis.call('HMGET', rec, T_STATUS, T_EXPIRES, T_JOINED)
  if r[1] == WAITING then
    local rank = redis.call('ZRANK', KEYS[3], existing)
    if rank then
      -- joining again counts as a poll
      redis.call('ZADD', KEYS[4], now, existing)
      redis.call('PEXPIRE', rec, ttl)
      redis.call('PEXPIRE', KEYS[1], ttl)
      return {0, existing, WAITING, rank + 1, 0, redis.call('ZCARD', KEYS[6]), needs_listing(), tonumber(r[3]), 0}
    end
  elseif r[1] == ACTIVE and tonumber(r[2]) > now then
    return {0, existing, ACTIVE, 0, tonumber(r[2]), redis.call('ZCARD', KEYS[6]), 0, tonumber(r[3]), 0}
  end
end

local seq = redis.call('INCR', KEYS[5])
redis.call('HSET', KEYS[2], T_USER, ARGV[2], T_STATUS, WAITING, T_JOINED, now)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZADD', KEYS[3], seq, ARGV[1])
redis.call('ZADD', KEYS[4], now, ARGV[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
local rank = redis.call('ZRANK', KEYS[3], ARGV[1])
return {1, ARGV[1], WAITING, rank + 1, 0, redis.call('ZCARD', KEYS[6]), needs_listing(), now, seq}
