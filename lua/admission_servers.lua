-- admission_servers.lua: a server says it runs an admission worker and learns
-- which others do, to take its share of the admission groups. A server that
-- has not said so for the time to live is dropped: it died.
--
-- KEYS[1]  sorted set: server id -> when it last said so (ms, Redis's clock)
-- ARGV[1]  this server's id   ARGV[2] time to live ms
-- returns  the ids of the live servers, this one included
local now = now_ms()
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[2])))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('ZRANGE', KEYS[1], 0, -1)
