-- sold_mark.lua: marks seats SOLD in a schedule's bitmap (the rebuild from
-- Postgres after Redis lost data, and its periodic catch-up). Only sets bits:
-- a sale is never undone here.
--
-- KEYS[1]  sold bitmap
-- ARGV     seat indexes
-- returns  how many were not marked yet
local fresh = 0
for i = 1, #ARGV do
  if redis.call('SETBIT', KEYS[1], ARGV[i], 1) == 0 then
    fresh = fresh + 1
  end
end
return fresh
