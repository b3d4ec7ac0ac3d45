-- seat_map.lua: the queue pass and the live state of one schedule's seats, in
-- one round trip whatever the seat count: the SOLD and HELD bitmaps (after
-- tidying holds that lapsed).
--
-- KEYS[1]  token reference (lib.lua token_ref)   KEYS[2] sold bitmap   KEYS[3] held zset   KEYS[4] held bitmap
-- ARGV[1]  user id
-- returns  {verdict} when the pass fails, else {'ok', sold bitmap, held bitmap,
--          lapsed holds tidied}
local now = now_ms()
local g = gate(KEYS[1], ARGV[1], now)
if g ~= 'ok' then
  return {g}
end
local lapsed = tidy_lapsed(KEYS[3], KEYS[4], now, 1000)
return {'ok', redis.call('GET', KEYS[2]) or '', redis.call('GET', KEYS[4]) or '', lapsed}
