-- queue_status.lua: read a token for its owner; a read of a WAITING token counts
-- as a poll (it keeps the token from being dropped as idle). A WAITING token has
-- a place once its room has opened; in the pre-queue it has an expected one.
--
-- KEYS[1]  token reference 'tag#seq#check' (see token_ref in lib.lua)
-- KEYS[2]  waiting bitmap   KEYS[3] active zset   KEYS[4] listed marker (see queue_join.lua)
-- KEYS[5]  room hash   KEYS[6] pre-queue zset   KEYS[7] arrival counter
-- KEYS[8]  the user's poll rate limit {c}:rl:poll:<user> (see rate_wait in lib.lua)
-- ARGV[1]  user id   ARGV[2] retention ms of an ended record   ARGV[3] marker ttl ms
-- ARGV[4]  rate limit interval ms (0 = off)   ARGV[5] rate limit burst
-- returns  {'limited', ms to wait} (over the user's rate: nothing changed, not
--          even the poll time); nil when unknown or another user's; {'noroom'}; else
--          {'ok', status letter, position|0, expected position|0, expires ms|0,
--           active count, needs listing 0/1, room view (see render_view)}
local now = now_ms()
local wait = rate_wait(KEYS[8], now, ARGV[4], ARGV[5])
if wait > 0 then
  return {'limited', wait}
end
local r = rec_of(KEYS[1], ARGV[1])
if not r then
  return nil
end
local room = room_hot(KEYS[5])
if not room then
  return {'noroom'}
end
local tag = r.tag
open_if_due(tag, room, KEYS[6], KEYS[7], now)
local status = r.status
if status == WAITING then
  local position, where = place(tag, room, KEYS[2], KEYS[6], r.seq)
  if where then
    if mark_poll(tag, room.idle, r.seq, now) then
      local ttl = waiting_ttl(room.idle, ARGV[2])
      keep_for(r.key, ttl)
      keep_for(user_key(tag, r.user), ttl)
    end
    local listing = 0
    if redis.call('EXISTS', KEYS[4]) == 0 then
      redis.call('SET', KEYS[4], 1, 'PX', ARGV[3])
      listing = 1
    end
    local expected = 0
    if where == 'prequeue' then
      expected = expected_place(tag, room, KEYS[2], KEYS[6])
    end
    return {'ok', WAITING, position or 0, expected, 0, redis.call('ZCARD', KEYS[3]), listing,
      view_now(room, now)}
  end
  status = EXPIRED
elseif status == ACTIVE then
  if r.expires > now then
    return {'ok', ACTIVE, 0, 0, r.expires, 0, 0, view_now(room, now)}
  end
  -- expired, and the admission tick has not tidied it yet
  status = EXPIRED
end
return {'ok', status, 0, 0, 0, 0, 0, view_now(room, now)}
