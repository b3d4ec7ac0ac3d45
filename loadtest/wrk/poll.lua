-- GET /queue/tokens/{token}: WAITING fans poll their place.
package.path = os.getenv("WRK_DIR") .. "/?.lua;" .. package.path
local common = require("common")
local fans
function init()
  fans = common.pairs_from(os.getenv("BENCH_DATA") .. "/waiting.txt")
end
function request()
  local f = fans[math.random(#fans)]
  return wrk.format("GET", "/queue/tokens/" .. f[2], {["authorization"] = f[1]})
end
