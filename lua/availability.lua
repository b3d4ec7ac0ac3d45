-- availability.lua: the queue pass and, per schedule of the concert, how many
-- seats are sold or held (a seat both sold and still held counts once).
--
-- KEYS[1]  token reference (lib.lua token_ref)   KEYS[2] scratch key (deleted before returning)
-- then per schedule: sold bitmap, held zset, held bitmap
-- ARGV[1]  user id
-- returns  {verdict} when the pass fails, else {'ok', lapsed holds tidied,
--          taken1, taken2, ...}
local now = now_ms()
local g = gate(KEYS[1], ARGV[1], now)
if g ~= 'ok' then
  return {g}
end
local out = {'ok', 0}
for i = 3, #KEYS, 3 do
  out[2] = out[2] + tidy_lapsed(KEYS[i + 1], KEYS[i + 2], now, 1000)
  redis.call('BITOP', 'OR', KEYS[2], KEYS[i], KEYS[i + 2])
  out[#out + 1] = redis.call('BITCOUNT', KEYS[2])
end
redis.call('DEL', KEYS[2])
return out
