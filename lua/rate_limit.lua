-- rate_limit.lua: one rate limit on its own, for the paths whose work is not
-- a script of the hot path (POST /users per client address; payments and
-- charges per user). Join, poll and hold check theirs inside their own script.
--
-- KEYS[1]  the limit's key for its subject (see Keys::address_rate, Keys::user_rate)
-- ARGV[1]  interval ms (0 = off)   ARGV[2] burst
-- returns  0 when the request fits (and is counted), else the ms to wait
return rate_wait(KEYS[1], now_ms(), ARGV[1], ARGV[2])
