#!/usr/bin/env bash
# Scale figures (`make scale`): Redis memory per WAITING token at 1 000 000
# waiting, and join/poll latency with 5 000 vs 1 000 000 waiting, all through
# the service (real joins over HTTP, real tokens), written to loadtest/out/ (not
# tracked) and, with RECORD=1, appended to loadtest/RESULTS.md.
#
#   loadtest/scale.sh [WAITING]        1 000 000 by default
#   RECORD=1 loadtest/scale.sh         (make scale RECORD=1) also append to RESULTS.md
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
TARGET=${1:-1000000}
CONNS=${BENCH_CONNECTIONS:-50}
SECRET=scale-secret-0123456789abcdef
ADMIN=scale-admin
run="scale-$$"
# shellcheck source=loadtest/lib.sh
source loadtest/lib.sh
trap lib_cleanup EXIT
need wrk wrk

build_all
# Nobody is admitted, nobody idles out: the queue only grows.
start_boxoffice queue 18084 ADMISSION_RATE=1 MAX_ACTIVE=1 WAITING_IDLE_SECS=86400

BO_HOST=http://127.0.0.1:18084 BO_AUTH_SECRET=$SECRET BO_ADMIN_KEY=$ADMIN BO_IDENTITIES=$((TARGET + 300000)) \
  loadtest/target/release/boxoffice-load prepare "$work" waiting
# shellcheck disable=SC1091
source "$work/waiting.env"
export WAITING_CONCERT
# Tokens placed by arrival: the count lua/lib.lua keeps beside the waiting bitmap.
waiting() { local n; n=$(rcli HGET "$prefix:{c:$WAITING_CONCERT}:w:n" all); echo "${n:-0}"; }
mem() { rcli INFO memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r'; }

# run <script> <seconds>: prints "req/s p50 p99 µs": wrk's figures and Redis's
# own time per script call during the run (INFO commandstats, reset first: the
# run's scripts and the few admission ticks in it).
run() {
  rcli CONFIG RESETSTAT >/dev/null
  local figures
  figures=$(JOIN_OFFSET=$(( $(waiting) - small )) JOIN_LIMIT=${JOIN_LIMIT:-$(( $2 * 40000 ))} WRK_DIR="$root/loadtest/wrk" BENCH_DATA="${DATA:-$work}" wrk -t1 -c"$CONNS" -d"$2s" --latency \
    -s "loadtest/wrk/$1" http://127.0.0.1:18084 2>&1 |
    awk '/Requests\/sec/ {r = $2} $1 == "50%" {p50 = $2} $1 == "99%" {p99 = $2} END {print r, p50, p99}')
  echo "$figures $(rcli INFO commandstats | tr -d '\r' |
    sed -n 's/^cmdstat_evalsha:.*usec_per_call=\([0-9.]*\).*/\1/p')"
}

small=0
small=$(waiting)
# A first short run warms the server, its pools and Redis up (not counted): the
# first measured run after prepare was otherwise the slowest of the four.
run poll.lua 2 >/dev/null
poll_small=$(run poll.lua 5)
join_small=$(run join.lua 3)
before=$(waiting); mem_before=$(mem)
# Fill to TARGET with real joins (each a new fan).
stalls=0
while [ "$(waiting)" -lt "$TARGET" ]; do
  was=$(waiting)
  # Runs of about 10 000 joins a second, 10 s to 5 min long, each keeping
  # only the identities it can use (ten million would not fit wrk's Lua).
  secs=$(( (TARGET - was) / 10000 < 10 ? 10 : (TARGET - was) / 10000 > 300 ? 300 : (TARGET - was) / 10000 ))
  # Not far past TARGET's identities (the rest are the last join run's): a run
  # faster than planned re-joins its window instead. The 1 000 spare cover
  # joins that failed (a wrk timeout): the offset counts joins that landed, so
  # each failure shifts the window back onto an identity already in the queue.
  left=$(( TARGET - was + 1000 ))
  JOIN_LIMIT=$(( secs * 40000 < left ? secs * 40000 : left )) run join.lua "$secs" >/dev/null
  if [ "$(waiting)" -le "$was" ]; then
    stalls=$((stalls + 1))
    [ "$stalls" -lt 3 ] || { echo "scale: the queue stopped growing at $was" >&2; exit 1; }
  fi
done
after=$(waiting); mem_after=$(mem)
[ "$after" -gt "$before" ] || { echo "scale: WAITING must exceed $before (got $after)" >&2; exit 1; }
poll_big=$(run poll.lua 5)
# 5 000 more fans at the tail: a place far back counts more blocks than one
# among the first 65 536 arrivals, where the 5 000 above all are.
env BO_HOST=http://127.0.0.1:18084 BO_AUTH_SECRET=$SECRET BO_ADMIN_KEY=$ADMIN WAITING_CONCERT="$WAITING_CONCERT" \
  loadtest/target/release/boxoffice-load prepare "$work/tail" tail
poll_tail=$(DATA="$work/tail" run poll.lua 5)
join_big=$(run join.lua 3)
per_token=$(( (mem_after - mem_before) / (after - before) ))

table=$(cat <<EOF
### Scale: one queue of $after WAITING tokens ($(date -u +%Y-%m-%dT%H:%M:%SZ))

Redis used_memory grew $(( (mem_after - mem_before) / 1048576 )) MiB for $(( after - before )) joins:
**$per_token bytes per WAITING token** (DESIGN.md: ≤ 200 MB at 1 000 000, i.e. ≤ 200 B each).

| wrk -t1 -c$CONNS | waiting | req/s | p50 | p99 | Redis µs per script call |
|---|---:|---:|---:|---:|---:|
| poll | $small | $(awk '{print $1" | "$2" | "$3" | "$4}' <<<"$poll_small") |
| join | $small → $before | $(awk '{print $1" | "$2" | "$3" | "$4}' <<<"$join_small") |
| poll, the first 5 000 | $after | $(awk '{print $1" | "$2" | "$3" | "$4}' <<<"$poll_big") |
| poll, 5 000 at the tail | $after | $(awk '{print $1" | "$2" | "$3" | "$4}' <<<"$poll_tail") |
| join | $after | $(awk '{print $1" | "$2" | "$3" | "$4}' <<<"$join_big") |
EOF
)
echo "$table"
out=$(out_file scale)
printf '\n%s\n' "$table" >"$out"
[ "${RECORD:-}" != 1 ] || cat "$out" >>loadtest/RESULTS.md
written "$out"
