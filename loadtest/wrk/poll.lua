-- GET /queue/tokens/{token}: WAITING fans poll their place. Each fan's request
-- is formatted once, in init: wrk shares the two cores with the server and
-- Redis, and formatting it again per request cost wrk CPU the server then
-- lacked.
package.path = os.getenv("WRK_DIR") .. "/?.lua;" .. package.path
local common = require("common")
local requests
function init()
  requests = {}
  for i, f in ipairs(common.pairs_from(os.getenv("BENCH_DATA") .. "/waiting.txt")) do
    requests[i] = wrk.format("GET", "/queue/tokens/" .. f[2], {["authorization"] = f[1]})
  end
end
function request()
  return requests[math.random(#requests)]
end
