-- sold_check.lua: must this concert's SOLD seats be rebuilt from Postgres on
-- the Redis node that holds them? The concert's marker names the run id of
-- that node when its seats were last rebuilt: a node restarted without its
-- data, or a replica promoted in its place, has another run id; a flush takes
-- the marker away. Read here, on the node itself, so on a Redis Cluster each
-- concert is compared with its own master. When a rebuild is due, the call
-- takes it for ARGV[1]'s nonce (one server at a time).
--
-- KEYS[1]  marker   KEYS[2] rebuild nonce
-- ARGV[1]  this rebuild's nonce   ARGV[2] the nonce's lifetime (ms)
-- ARGV[3]  '1': rebuild whatever the marker says
-- returns  'current' | 'rebuild' (nonce taken: rebuild now) | 'busy' (another server rebuilds)
local run_id = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')
if ARGV[3] ~= '1' and redis.call('GET', KEYS[1]) == run_id then
  return 'current'
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 'rebuild'
end
return 'busy'
