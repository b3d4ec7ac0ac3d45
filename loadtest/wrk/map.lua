-- GET /schedules/{id}/seats of a 50 000-seat schedule; with MAP_ENCODING=gzip
-- it asks for gzip as a browser does (wrk does not decompress; it counts bytes).
-- Each fan's request is formatted once, in init (see poll.lua).
package.path = os.getenv("WRK_DIR") .. "/?.lua;" .. package.path
local common = require("common")
local requests
function init()
  local path = "/schedules/" .. os.getenv("MAP_SCHEDULE") .. "/seats"
  local encoding = os.getenv("MAP_ENCODING")
  requests = {}
  for i, f in ipairs(common.pairs_from(os.getenv("BENCH_DATA") .. "/active.txt")) do
    local headers = {["authorization"] = f[1], ["x-queue-token"] = f[2]}
    if encoding and encoding ~= "" then
      headers["accept-encoding"] = encoding
    end
    requests[i] = wrk.format("GET", path, headers)
  end
end
function request()
  return requests[math.random(#requests)]
end
