-- sold_rebuilt.lua: a full rebuild of SOLD seats ended; if its nonce is still
-- there (no flush, no other rebuild since it began), the marker names the
-- running Redis and the nonce goes. Atomic, so a flush cannot fall in between.
--
-- KEYS[1]  rebuild nonce key   KEYS[2] marker
-- ARGV[1]  this rebuild's nonce   ARGV[2] the Redis run_id
-- returns  1 when the marker was set, else 0
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[1])
return 1
