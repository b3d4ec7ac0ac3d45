-- queue_gate.lua: the queue pass of a gated request, checked in API.md's order
-- (unknown or another user's, then expired or processed, then still waiting).
-- The caller compares the token's concert with the resource's afterwards.
--
-- KEYS[1]  token reference 'tag#seq#check' (see token_ref in lib.lua)
-- ARGV[1]  user id
-- returns  'invalid' | 'expired' | 'waiting' | 'ok'
return gate(KEYS[1], ARGV[1], now_ms())
