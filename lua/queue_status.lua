-- queue_status.lua: read a token for its owner; a read of a WAITING token counts
-- as a poll (it keeps the token from being dropped as idle). A WAITING token has
-- a place once its room has opened; in the pre-queue it has an expected one.
--
-- KEYS[1]  token record   KEYS[2] waiting zset   KEYS[3] polled zset   KEYS[4] active zset
-- KEYS[5]  user index   KEYS[6] listed marker (see queue_join.lua)   KEYS[7] room hash
-- KEYS[8]  pre-queue zset   KEYS[9] arrival counter
-- KEYS[10] the user's poll rate limit {c}:rl:poll:<user> (see rate_wait in lib.lua)
-- ARGV[1]  token   ARGV[2] user id   ARGV[3] retention ms of an ended record
-- ARGV[4]  marker ttl ms   ARGV[5] concert tag
-- ARGV[6]  rate limit interval ms (0 = off)   ARGV[7] rate limit burst
-- returns  {'limited', ms to wait} (over the user's rate: nothing changed, not
--          even the poll time); nil when unknown or another user's; {'noroom'}; else
--          {'ok', status letter, position|0, expected position|0, expires ms|0,
--           active count, needs listing 0/1, room view (see render_view)}
local now = now_ms()
local wait = rate_wait(KEYS[10], now, ARGV[6], ARGV[7])
if wait > 0 then
  return {'limited', wait}
end
local r = redis.call('HMGET', KEYS[1], T_USER, T_STATUS, T_EXPIRES)
if not r[1] or r[1] ~= ARGV[2] then
  return nil
end
local room = room_hot(KEYS[7])
if not room then
  return {'noroom'}
end
local tag = ARGV[5]
open_if_due(tag, room, KEYS[8], KEYS[9], now)
local status = r[2]
if status == WAITING then
  local position, where = place(tag, room, KEYS[2], KEYS[8], ARGV[1])
  if where then
    local ttl = room.idle + tonumber(ARGV[3])
    redis.call('ZADD', KEYS[3], now, ARGV[1])
    redis.call('PEXPIRE', KEYS[1], ttl)
    redis.call('PEXPIRE', KEYS[5], ttl)
    local listing = 0
    if redis.call('EXISTS', KEYS[6]) == 0 then
      redis.call('SET', KEYS[6], 1, 'PX', ARGV[4])
      listing = 1
    end
    local expected = 0
    if where == 'prequeue' then
      expected = expected_place(tag, room, KEYS[2], KEYS[8])
    end
    return {'ok', WAITING, position or 0, expected, 0, redis.call('ZCARD', KEYS[4]), listing,
      view_now(room, now)}
  end
  status = EXPIRED
elseif status == ACTIVE then
  if tonumber(r[3]) > now then
    return {'ok', ACTIVE, 0, 0, tonumber(r[3]), 0, 0, view_now(room, now)}
  end
  -- expired, and the admission tick has not tidied it yet
  status = EXPIRED
end
return {'ok', status, 0, 0, 0, 0, 0, view_now(room, now)}
