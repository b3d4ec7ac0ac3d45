-- lease_release.lua: a server hands an admission group's lease back (at
-- shutdown, or when the group is dealt to another server), so the next holder
-- takes it at its next tick instead of after the lease runs out.
--
-- KEYS[1]  the group's lease key
-- ARGV[1]  this server's id
-- returns  1 if it held the lease and gave it back, else 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
