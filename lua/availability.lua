-- availability.lua: the queue pass and, per schedule of the concert, how many
-- seats are sold and how many are held (holds not lapsed).
--
-- KEYS[1]  token record, then per schedule: sold bitmap, held zset
-- ARGV[1]  user id
-- returns  {verdict} when the pass fails, else {'ok', sold1, held1, sold2, held2, ...}
local now = now_ms()
local g = gate(KEYS[1], ARGV[1], now)
if g ~= 'ok' then
  return {g}
end
local out = {'ok'}
for i = 2, #KEYS, 2 do
  out[#out + 1] = redis.call('BITCOUNT', KEYS[i])
  out[#out + 1] = redis.call('ZCOUNT', KEYS[i + 1], now, '+inf')
end
return out
