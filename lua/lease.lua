-- lease.lua: take or renew the lease of one admission group, so exactly one
-- server admits its concerts; the holder gets the group's queued concerts in
-- the same round trip.
--
-- KEYS[1]  the group's lease key
-- KEYS[2]  the group's set of queued concerts (same hash tag)
-- ARGV[1]  this server's id   ARGV[2] lease time ms
-- returns  {1, concert ids...} if this server holds the lease now, else {0}
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
elseif not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  return {0}
end
local held = redis.call('SMEMBERS', KEYS[2])
table.insert(held, 1, 1)
return held
