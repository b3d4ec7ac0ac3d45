-- POST /queue/tokens: every request a new fan (a fresh identity from jwts.txt).
local jwts, i, body
function init(args)
  jwts = {}
  for line in io.lines(os.getenv("BENCH_DATA") .. "/jwts.txt") do jwts[#jwts + 1] = line end
  -- Where this run starts in the list (JOIN_OFFSET: identities used before).
  i = tonumber(os.getenv("JOIN_OFFSET") or "0")
  body = '{"concert_id":' .. os.getenv("WAITING_CONCERT") .. '}'
end
function request()
  i = i % #jwts + 1
  return wrk.format("POST", "/queue/tokens",
    {["authorization"] = jwts[i], ["content-type"] = "application/json"}, body)
end
