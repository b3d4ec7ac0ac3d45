-- queue_gate.lua: the queue pass of a gated request, checked in API.md's order
-- (unknown or another user's, then expired or processed, then still waiting).
-- The caller compares the token's concert with the resource's afterwards.
--
-- KEYS[1]  token record
-- ARGV[1]  user id
-- returns  'invalid' | 'expired' | 'waiting' | 'ok'
local r = redis.call('HMGET', KEYS[1], 'u', 's', 'e')
if not r[1] or r[1] ~= ARGV[1] then
  return 'invalid'
end
if r[2] == 'W' then
  return 'waiting'
end
if r[2] == 'A' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if tonumber(r[3]) > now then
    return 'ok'
  end
end
return 'expired'
