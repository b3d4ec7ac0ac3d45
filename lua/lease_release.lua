-- lease_release.lua: a server that stops hands the admission lease back, so
-- another takes it at its next tick instead of after the lease runs out.
--
-- KEYS[1]  lease key
-- ARGV[1]  this server's id
-- returns  1 if it held the lease and gave it back, else 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
