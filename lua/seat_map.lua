-- seat_map.lua: the queue pass and the live state of one schedule's seats, in
-- one round trip whatever the seat count: the SOLD bitmap as it is, and the
-- indexes of the seats whose hold has not lapsed.
--
-- KEYS[1]  token record   KEYS[2] sold bitmap   KEYS[3] held zset
-- ARGV[1]  user id
-- returns  {verdict} when the pass fails, else {'ok', sold bitmap, {held index...}}
local now = now_ms()
local g = gate(KEYS[1], ARGV[1], now)
if g ~= 'ok' then
  return {g}
end
return {'ok', redis.call('GET', KEYS[2]) or '', redis.call('ZRANGEBYSCORE', KEYS[3], now, '+inf')}
