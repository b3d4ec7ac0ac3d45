-- room_read.lua: a waiting room as its operator (and the concert page) sees it,
-- with its seats counted now.
--
-- KEYS[1]  room hash   KEYS[2] waiting bitmap   KEYS[3] pre-queue zset   KEYS[4] active zset
-- KEYS[5]  scratch key
-- ARGV[1]  concert tag
-- returns  {'noroom'} | {'ok', version, schedules, waiting, live active, idle ms,
--           hold ms, max holds, paused 0/1, holds tidied, room view (see render_view)}
local now = now_ms()
local room = room_get(KEYS[1])
if not room then
  return {'noroom'}
end
local lapsed = recount(ARGV[1], room, KEYS[5], now)
local waiting = placed_count(ARGV[1], room, KEYS[2]) + redis.call('ZCARD', KEYS[3])
local active = redis.call('ZCOUNT', KEYS[4], '(' .. now, '+inf')
local paused = 0
if room.paused then
  paused = 1
end
return {'ok', room.v, room.n, waiting, active, room.idle, room.hold, room.holds, paused,
  lapsed, room.view}
