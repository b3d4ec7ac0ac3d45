-- ready.lua: the readiness probe. Proves Redis answers, accepts writes and runs
-- scripts loaded by SHA (a replica or a full disk would fail here).
--
-- KEYS[1]  the probe key
-- ARGV[1]  a value to write
-- returns  the value read back
redis.call('SET', KEYS[1], ARGV[1], 'PX', 10000)
return redis.call('GET', KEYS[1])
