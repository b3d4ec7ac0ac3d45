-- queue_unlist.lua: the admission worker stops visiting a concert whose waiting
-- room is empty. The caller has already taken the concert off the worker's set;
-- this drops the listed marker only if nothing waits (placed, in a closed
-- pre-queue, or in the open one) and nothing is active, so the next join lists
-- the concert again. If something is there, the caller lists it back.
--
-- KEYS[1]  waiting bitmap   KEYS[2] active zset   KEYS[3] listed marker
-- KEYS[4]  pre-queue zset   KEYS[5] room hash
-- returns  1 if unlisted, 0 if the queue is in use (list it back)
local segs = redis.call('HGET', KEYS[5], RM_SEGS)
if w_count(KEYS[1]) == 0 and redis.call('ZCARD', KEYS[2]) == 0
    and redis.call('ZCARD', KEYS[4]) == 0 and (not segs or segs == '') then
  redis.call('DEL', KEYS[3])
  return 1
end
return 0
