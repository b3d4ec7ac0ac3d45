-- POST /queue/tokens: every request a new fan (a fresh identity from jwts.txt).
-- JOIN_OFFSET: identities used before (the run starts after them);
-- JOIN_LIMIT (optional): keep only that many identities from there, so a run
-- over a file of ten million (make scale SCALE_WAITING=10000000) holds a
-- window of it in memory, not all of it.
local jwts, i, body
function init(args)
  jwts = {}
  local offset = tonumber(os.getenv("JOIN_OFFSET") or "0")
  local limit = tonumber(os.getenv("JOIN_LIMIT") or "0")
  local n = 0
  for line in io.lines(os.getenv("BENCH_DATA") .. "/jwts.txt") do
    n = n + 1
    if limit == 0 then
      jwts[#jwts + 1] = line
    elseif n > offset then
      jwts[#jwts + 1] = line
      if #jwts >= limit then break end
    end
  end
  i = offset
  if limit > 0 then i = 0 end
  body = '{"concert_id":' .. os.getenv("WAITING_CONCERT") .. '}'
end
function request()
  i = i % #jwts + 1
  return wrk.format("POST", "/queue/tokens",
    {["authorization"] = jwts[i], ["content-type"] = "application/json"}, body)
end
