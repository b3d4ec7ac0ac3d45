-- Shared by the wrk scripts of compare.sh: reads `<bearer>\t<token>` lines.
local M = {}
function M.pairs_from(path)
  local out = {}
  for line in io.lines(path) do
    local auth, token = line:match("^([^\t]+)\t(.+)$")
    if auth then out[#out + 1] = {auth, token} end
  end
  return out
end
return M
