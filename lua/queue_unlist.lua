-- queue_unlist.lua: the admission worker stops visiting a concert whose queue is
-- empty. The caller has already taken the concert off the worker's set; this
-- drops the listed marker only if nothing waits or is active, so the next join
-- lists the concert again. If something is there, the caller lists it back.
--
-- KEYS[1]  waiting zset   KEYS[2] active zset   KEYS[3] listed marker
-- returns  1 if unlisted, 0 if the queue is in use (list it back)
if redis.call('ZCARD', KEYS[1]) == 0 and redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[3])
  return 1
end
return 0
