-- lease.lua: take or renew the admission lease, so exactly one server admits.
--
-- KEYS[1]  lease key
-- ARGV[1]  this server's id   ARGV[2] lease time ms
-- returns  1 if this server holds the lease now, else 0
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
