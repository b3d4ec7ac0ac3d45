-- POST /reservations: admitted fans hold random seats of a 100 000-seat schedule.
package.path = os.getenv("WRK_DIR") .. "/?.lua;" .. package.path
local common = require("common")
local fans, schedule
function init()
  fans = common.pairs_from(os.getenv("BENCH_DATA") .. "/active.txt")
  schedule = os.getenv("HOLD_SCHEDULE")
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end
function request()
  local f = fans[math.random(#fans)]
  return wrk.format("POST", "/reservations",
    {["authorization"] = f[1], ["x-queue-token"] = f[2], ["content-type"] = "application/json"},
    '{"schedule_id":' .. schedule .. ',"seat_no":' .. math.random(100000) .. '}')
end
