-- GET /schedules/{id}/seats of a 50 000-seat schedule; with MAP_ENCODING=gzip
-- it asks for gzip as a browser does (wrk does not decompress; it counts bytes).
package.path = os.getenv("WRK_DIR") .. "/?.lua;" .. package.path
local common = require("common")
local fans, path, encoding
function init()
  fans = common.pairs_from(os.getenv("BENCH_DATA") .. "/active.txt")
  path = "/schedules/" .. os.getenv("MAP_SCHEDULE") .. "/seats"
  encoding = os.getenv("MAP_ENCODING")
end
function request()
  local f = fans[math.random(#fans)]
  local headers = {["authorization"] = f[1], ["x-queue-token"] = f[2]}
  if encoding and encoding ~= "" then
    headers["accept-encoding"] = encoding
  end
  return wrk.format("GET", path, headers)
end
