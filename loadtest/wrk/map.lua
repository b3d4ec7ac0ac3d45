-- GET /schedules/{id}/seats of a 50 000-seat schedule.
package.path = os.getenv("WRK_DIR") .. "/?.lua;" .. package.path
local common = require("common")
local fans, path
function init()
  fans = common.pairs_from(os.getenv("BENCH_DATA") .. "/active.txt")
  path = "/schedules/" .. os.getenv("MAP_SCHEDULE") .. "/seats"
end
function request()
  local f = fans[math.random(#fans)]
  return wrk.format("GET", path, {["authorization"] = f[1], ["x-queue-token"] = f[2]})
end
