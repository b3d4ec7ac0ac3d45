-- room_set.lua: writes a waiting room's settings (from Postgres: an operator's
-- change, or a restore after Redis lost the room) into its hash, unless the
-- hash already holds a newer copy: settings `version`, then the number of
-- schedules, compared in that order. When the schedules changed, the seat
-- counts go, so no answer says SOLD_OUT of a room that has new seats before
-- the next tick counts them. What the room does at run time (its closed
-- pre-queues) is kept.
--
-- KEYS[1]  room hash
-- ARGV[1]  version   ARGV[2] number of schedules   ARGV[3] '1' to write whatever the
--          hash holds (a reconcile that found it differs from Postgres)
-- ARGV[4]  admission rate   ARGV[5] max active (0 = none)   ARGV[6] active ttl ms
-- ARGV[7]  waiting idle ms   ARGV[8] hold ttl ms   ARGV[9] max holds per user
-- ARGV[10] opens ms (0 = none)   ARGV[11] paused 0/1   ARGV[12] message ('' = none)
-- ARGV[13] schedules 'id:seats,id:seats'   ARGV[14] seats in all
-- returns  1 when written, 0 when the hash held a copy as new or newer
local have = redis.call('HMGET', KEYS[1], RM_VERSION, RM_NSCHED)
local v, n = tonumber(ARGV[1]), tonumber(ARGV[2])
if have[1] and ARGV[3] ~= '1' then
  local hv, hn = tonumber(have[1]), tonumber(have[2]) or 0
  if hv > v or (hv == v and hn >= n) then
    return 0
  end
end
redis.call('HSET', KEYS[1], RM_VERSION, v, RM_NSCHED, n, RM_RATE, ARGV[4], RM_CAP, ARGV[5],
  RM_TTL, ARGV[6], RM_IDLE, ARGV[7], RM_HOLD, ARGV[8], RM_HOLDS, ARGV[9], RM_OPENS, ARGV[10],
  RM_PAUSED, ARGV[11], RM_SCHED, ARGV[13], RM_TOTAL, ARGV[14])
if ARGV[12] == '' then
  redis.call('HDEL', KEYS[1], RM_MSG)
else
  redis.call('HSET', KEYS[1], RM_MSG, ARGV[12])
end
if tonumber(have[2]) ~= n then
  redis.call('HDEL', KEYS[1], RM_LEFT, RM_SOLD)
end
render_view(room_get(KEYS[1]), now_ms())
return 1
