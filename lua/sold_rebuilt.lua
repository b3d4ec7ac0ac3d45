-- sold_rebuilt.lua: a rebuild of a concert's SOLD seats ended; if its nonce is
-- still there (no flush, no other rebuild since it began), the marker names
-- the node's running Redis and the nonce goes. Atomic, so a flush cannot fall
-- in between.
--
-- KEYS[1]  rebuild nonce   KEYS[2] marker
-- ARGV[1]  this rebuild's nonce
-- returns  1 when the marker was set, else 0
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local run_id = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')
redis.call('SET', KEYS[2], run_id)
redis.call('DEL', KEYS[1])
return 1
