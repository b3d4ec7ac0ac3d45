#!/usr/bin/env bash
# `make run-many N=3`: one boxoffice deployment of N instances behind haproxy,
# on one machine. Like `make run`, it first makes sure Redis and Postgres
# answer (scripts/services.sh), then migrates and seeds the demo concert once
# (`boxoffice seed-demo`), starts N `boxoffice serve` on 127.0.0.1:8081..808N
# sharing DATABASE_URL, REDIS_URL and REDIS_PREFIX, and haproxy (installed with
# apt-get when missing) on 127.0.0.1:8080: round robin, a health check on
# GET /ready, `option forwardfor` (the instances get TRUSTED_PROXIES=127.0.0.1/32,
# so their per-address limits see the fan's address, not haproxy's).
#
#   scripts/run-many.sh [run]   start everything, print the URLs, stay in the foreground;
#                               Ctrl-C (or `stop` from elsewhere) stops it all
#   scripts/run-many.sh start   the same, but return once every instance is ready and
#                               leave it all running (for scripts; `stop` ends it)
#   scripts/run-many.sh stop    TERM the instances (they drain: requests in flight get
#                               up to 20 s, payments 15 s more), then haproxy
#   scripts/run-many.sh status  haproxy's view of each instance (UP/DOWN, requests)
#
# Everything lives under .dev/run-many/ (RUN_MANY_DIR): haproxy.cfg, haproxy.log,
# instance-K.log (each instance's stderr, JSON lines) and the pid files.
#
# Environment:
#   N                    instances (default 3)
#   RUN_MANY_PORT        the balancer's port (8080); the instances take the next N ports
#                        (RUN_MANY_FIRST_PORT to start elsewhere)
#   RUN_MANY_STATS_PORT  haproxy's stats page, 127.0.0.1 only (8404; `;csv` appended
#                        to its URL gives the CSV that `status` reads)
#   RUN_MANY_SEED        0: migrate only, no demo concert
#   BIN                  the boxoffice binary (default target/release/boxoffice,
#                        built with `cargo build --release --locked` when missing)
#   ADMIN_KEY            defaults to dev-admin-key, as `make run`
#   REDIS_URL            a single Redis (checked and started by scripts/services.sh) or a
#                        Redis Cluster, `redis-cluster://h:p?node=h:p&...` (`make cluster`;
#                        checked here node by node: `redis-cli -u` refuses that form)
# Anything else boxoffice reads (AUTH_SECRET, REDIS_PREFIX, ADMISSION_RATE,
# RATE_LIMITS, ...) is passed to every instance unchanged, so they stay one deployment.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
# shellcheck disable=SC2034 # read by lib.sh's log
LOG_NAME=run-many

DIR=${RUN_MANY_DIR:-$ROOT/.dev/run-many}
BIN=${BIN:-target/release/boxoffice}
N=${N:-3}
LB_PORT=${RUN_MANY_PORT:-8080}
FIRST_PORT=${RUN_MANY_FIRST_PORT:-$((LB_PORT + 1))}
STATS_PORT=${RUN_MANY_STATS_PORT:-8404}
HOST=127.0.0.1
# Requests in flight get 20 s after TERM, payments 15 s more (README, "Shutdown").
DRAIN_SECS=40

{ [[ $N =~ ^[0-9]+$ ]] && [ "$N" -ge 1 ] && [ "$N" -le 64 ]; } || die "N must be 1 to 64, not $N"
for p in "$LB_PORT" "$FIRST_PORT" "$STATS_PORT"; do
  { [[ $p =~ ^[0-9]+$ ]] && [ "$p" -ge 1 ] && [ $((p + N)) -le 65535 ]; } || die "bad port $p"
done

# --- processes ---------------------------------------------------------------------
# A pid file's process, only while it still runs the program we started (a pid
# left over from before a reboot may belong to anything by now).
live_pid() { # live_pid FILE PROGRAM -> the pid, or nothing
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2" && echo "$pid"
  return 0
}

instance_pids() {
  local f
  for f in "$DIR"/instance-*.pid; do [ -e "$f" ] && live_pid "$f" boxoffice; done
  return 0
}

wait_gone() { # wait_gone SECONDS PID...: true when all have exited in time
  local secs=$1 p left
  shift
  for _ in $(seq $((secs * 10))); do
    left=
    for p in "$@"; do kill -0 "$p" 2>/dev/null && { left=1; break; }; done
    [ -z "$left" ] && return 0
    sleep 0.1
  done
  return 1
}

# TERM every instance at once and let them drain, then haproxy. The
# balancer's health checks see each instance go (it stops accepting first),
# so new requests meanwhile get haproxy's 503.
stop_processes() {
  local pids p hp
  mapfile -t pids < <(instance_pids)
  if [ "${#pids[@]}" -gt 0 ]; then
    log "stopping ${#pids[@]} instance(s) (TERM: they drain, up to ${DRAIN_SECS} s)"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    if ! wait_gone "$DRAIN_SECS" "${pids[@]}"; then
      for p in "${pids[@]}"; do
        kill -0 "$p" 2>/dev/null && { log "instance pid $p still up after ${DRAIN_SECS} s: KILL"; kill -KILL "$p" 2>/dev/null || true; }
      done
    fi
  fi
  hp=$(live_pid "$DIR/haproxy.pid" haproxy)
  if [ -n "$hp" ]; then
    log "stopping haproxy"
    kill -TERM "$hp" 2>/dev/null || true
    wait_gone 5 "$hp" || kill -KILL "$hp" 2>/dev/null || true
  fi
  rm -f "$DIR"/instance-*.pid "$DIR/haproxy.pid"
  log "stopped"
}

stop() {
  local sup
  sup=$(live_pid "$DIR/run-many.pid" run-many)
  if [ -n "$sup" ] && [ "$sup" != $$ ]; then
    # A foreground run-many owns them: it stops them in order and exits.
    kill -TERM "$sup"
    wait_gone $((DRAIN_SECS + 10)) "$sup" || die "run-many (pid $sup) did not stop"
    log "stopped (by run-many pid $sup)"
  else
    stop_processes
  fi
  rm -f "$DIR/run-many.pid"
}

status() {
  local csv
  csv=$(curl -fsS --max-time 5 "http://$HOST:$STATS_PORT/;csv" 2>/dev/null) ||
    { echo "run-many: haproxy's stats do not answer on $HOST:$STATS_PORT (not running?)" >&2; return 1; }
  # CSV columns: 1 pxname, 2 svname, 18 status, 31 lbtot (times picked),
  # 41/43/44 hrsp_2xx/4xx/5xx (answers to clients; the health checks are not counted).
  awk -F, '$1 == "instances" { gsub(/ /, "_", $18); printf "%-9s %-5s picked=%s 2xx=%s 4xx=%s 5xx=%s\n", $2, $18, $31, $41, $43, $44 }' <<<"$csv"
}

# --- Redis: a single server, or a cluster -----------------------------------------------
is_cluster_url() { [[ $1 == redis-cluster://* || $1 == rediss-cluster://* ]]; }

# The seeds of a cluster URL, host:port, one a line: the authority and every node=.
cluster_seeds() {
  local rest=${1#*://} query="" part
  rest=${rest##*@}
  [[ $rest == *\?* ]] && query=${rest#*\?}
  rest=${rest%%\?*}
  echo "${rest%%/*}"
  IFS='&' read -ra parts <<<"$query"
  for part in "${parts[@]}"; do [[ $part == node=* ]] && echo "${part#node=}"; done
  return 0
}

# fred needs one seed that answers with the slot map; we ask for cluster_state:ok,
# one node at a time (as scripts/cluster.sh does: plain -h/-p, a user and
# password from the URL, --tls for rediss-cluster://).
check_cluster() {
  local url=$1 seed auth="" user="" args=()
  local rest=${url#*://}
  if [[ $rest == *@* ]]; then
    auth=${rest%%@*}
    if [[ $auth == *:* ]]; then user=${auth%%:*}; auth=${auth#*:}; else user=; fi
  fi
  [[ $url == rediss-* ]] && args+=(--tls)
  [ -n "$user" ] && args+=(--user "$user")
  need redis-cli redis-tools
  while read -r seed; do
    [ -n "$seed" ] || continue
    if REDISCLI_AUTH=$auth timeout 5 redis-cli --no-auth-warning "${args[@]}" -h "${seed%:*}" -p "${seed##*:}" \
        cluster info 2>/dev/null | tr -d '\r' | grep -qx 'cluster_state:ok'; then
      log "Redis Cluster ok at $seed"
      return 0
    fi
  done < <(cluster_seeds "$url")
  die "no seed of $url answers with cluster_state:ok (make cluster starts the local one)"
}

# --- start -------------------------------------------------------------------------------
write_haproxy_cfg() {
  local k
  # No long polls in boxoffice (the fan page polls with short GETs), but a
  # payment or a big seat map may take seconds: `timeout server` sits above
  # the instances' own 30 s request timeout, so they answer (503) first. The
  # keep-alive timeouts sit below their 75 s idle timeout, so haproxy closes
  # an idle connection before an instance does.
  cat >"$DIR/haproxy.cfg" <<EOF
# Written by scripts/run-many.sh; regenerated at every start.
global
    # maxconn: haproxy derives it from the open-file limit.
    log stderr format raw local0 notice

defaults
    mode http
    log global
    option httplog
    option forwardfor
    # A connection refused (an instance just killed) is retried on another.
    option redispatch
    retries 2
    timeout connect 2s
    timeout queue 5s
    timeout http-request 10s
    timeout client 60s
    timeout server 40s
    timeout http-keep-alive 60s

frontend boxoffice
    bind $HOST:$LB_PORT
    default_backend instances

backend instances
    balance roundrobin
    option httpchk GET /ready
    http-check expect status 200
    # Down after 2 failed checks (about 1 s), back after 2 good ones.
    default-server check inter 500ms fall 2 rise 2
EOF
  for k in $(seq "$N"); do
    echo "    server i$k $HOST:$((FIRST_PORT + k - 1))" >>"$DIR/haproxy.cfg"
  done
  cat >>"$DIR/haproxy.cfg" <<EOF

listen stats
    bind $HOST:$STATS_PORT
    stats enable
    stats uri /
    stats refresh 2s
EOF
}

start_instance() { # start_instance K
  local k=$1 port=$((FIRST_PORT + $1 - 1))
  # setsid: a Ctrl-C in the terminal reaches run-many only, which stops them in order.
  HTTP_ADDR=$HOST:$port setsid "$BIN" serve >"$DIR/instance-$k.log" 2>&1 </dev/null &
  echo $! >"$DIR/instance-$k.pid"
}

wait_ready() { # wait_ready K
  local k=$1 port=$((FIRST_PORT + $1 - 1)) pid
  pid=$(cat "$DIR/instance-$k.pid")
  for _ in $(seq 300); do
    curl -fs --max-time 2 "http://$HOST:$port/ready" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$DIR/instance-$k.log" >&2; die "instance $k exited; see $DIR/instance-$k.log"; }
    sleep 0.2
  done
  tail -n 20 "$DIR/instance-$k.log" >&2
  die "instance $k (127.0.0.1:$port) not ready after 60 s; see $DIR/instance-$k.log"
}

banner() {
  local secret="the development AUTH_SECRET"
  [ -z "${AUTH_SECRET:-}" ] || secret="your AUTH_SECRET"
  HTTP_ADDR=$HOST:$LB_PORT scripts/banner.sh | sed "s/^boxoffice is starting on \(.*\)$/boxoffice: $N instances behind haproxy on \1/"
  cat <<TXT
  Behind the balancer (round robin, health check GET /ready every 0.5 s):
TXT
  local k
  for k in $(seq "$N"); do
    printf '    i%-3s http://%s:%s   log %s\n' "$k" "$HOST" $((FIRST_PORT + k - 1)) "${DIR#"$ROOT"/}/instance-$k.log"
  done
  cat <<TXT
  haproxy  http://$HOST:$STATS_PORT/ (stats; ;csv for CSV)   config ${DIR#"$ROOT"/}/haproxy.cfg
  shared   REDIS_PREFIX=$REDIS_PREFIX, the DATABASE_URL and REDIS_URL above, $secret

  scripts/run-many.sh status   each instance as haproxy sees it
  kill \$(cat ${DIR#"$ROOT"/}/instance-1.pid)   take one away: haproxy marks it DOWN within a second

TXT
}

# Before any trap is set: a second run-many must not stop the first one's.
not_running() {
  mkdir -p "$DIR"
  { [ -z "$(instance_pids)" ] && [ -z "$(live_pid "$DIR/haproxy.pid" haproxy)" ]; } ||
    die "already running (scripts/run-many.sh stop first)"
}

start_all() {
  local k port
  for port in "$LB_PORT" "$STATS_PORT" $(seq "$FIRST_PORT" $((FIRST_PORT + N - 1))); do
    port_answers "$HOST" "$port" && die "something already listens on $HOST:$port"
  done

  if [ ! -x "$BIN" ]; then
    [ "$BIN" = target/release/boxoffice ] || die "BIN=$BIN is not an executable"
    log "building $BIN"
    cargo build --release --locked
  fi
  command -v haproxy >/dev/null || apt_install haproxy
  command -v curl >/dev/null || apt_install curl

  # Redis and Postgres, as `make run`. scripts/services.sh pings Redis with
  # `redis-cli -u`, which refuses a cluster URL: it then sees to Postgres (and
  # a local single Redis, as `make test-cluster` does) and the cluster is
  # checked here.
  local redis_url=${REDIS_URL:-}
  if is_cluster_url "$redis_url"; then
    REDIS_URL='' scripts/services.sh
  else
    scripts/services.sh
  fi
  # shellcheck disable=SC1091
  source .dev/env
  if is_cluster_url "$redis_url"; then
    REDIS_URL=$redis_url
    check_cluster "$REDIS_URL"
  fi
  export REDIS_URL DATABASE_URL
  export REDIS_PREFIX=${REDIS_PREFIX:-bo}
  export ADMIN_KEY=${ADMIN_KEY:-dev-admin-key}
  export TRUSTED_PROXIES=$HOST/32

  # Migrations (and the demo) once, before any instance starts.
  if [ "${RUN_MANY_SEED:-1}" = 0 ]; then "$BIN" migrate >&2; else "$BIN" seed-demo >&2; fi

  rm -f "$DIR"/instance-*.log "$DIR"/instance-*.pid
  for k in $(seq "$N"); do start_instance "$k"; done
  for k in $(seq "$N"); do wait_ready "$k"; done
  log "$N instance(s) ready on $HOST:$FIRST_PORT-$((FIRST_PORT + N - 1))"

  write_haproxy_cfg
  haproxy -c -q -f "$DIR/haproxy.cfg" || die "haproxy refuses $DIR/haproxy.cfg"
  # -db: stay in the foreground (of this script), logging to stderr.
  setsid haproxy -db -f "$DIR/haproxy.cfg" >"$DIR/haproxy.log" 2>&1 </dev/null &
  echo $! >"$DIR/haproxy.pid"
  for _ in $(seq 100); do
    [ "$(curl -fs --max-time 2 -o /dev/null -w '%{http_code}' "http://$HOST:$LB_PORT/ready" 2>/dev/null)" = 200 ] && break
    kill -0 "$(cat "$DIR/haproxy.pid")" 2>/dev/null || { cat "$DIR/haproxy.log" >&2; die "haproxy exited"; }
    sleep 0.1
  done
  curl -fs --max-time 2 -o /dev/null "http://$HOST:$LB_PORT/ready" || die "haproxy on $HOST:$LB_PORT does not answer; see $DIR/haproxy.log"
  banner
}

case "${1:-run}" in
  run)
    not_running
    echo $$ >"$DIR/run-many.pid"
    # Whatever ends this script (Ctrl-C, `stop`, a failed start) stops what it started.
    trap 'stop_processes; rm -f "$DIR/run-many.pid"' EXIT
    # Ctrl-C, and TERM (how `scripts/run-many.sh stop` asks), end a clean
    # stop, not a failure; a lost terminal (HUP) stops everything too.
    trap 'exit 0' INT TERM
    trap 'exit 129' HUP
    start_all
    log "Ctrl-C (or scripts/run-many.sh stop) stops all"
    # Returns when every child has exited (say, each killed by hand), or on a signal.
    while [ -n "$(instance_pids)" ] || [ -n "$(live_pid "$DIR/haproxy.pid" haproxy)" ]; do
      sleep 1 & wait $! || true
    done
    ;;
  start)
    not_running
    trap 'stop_processes' EXIT
    start_all
    trap - EXIT
    ;;
  stop) stop ;;
  status) status ;;
  *) die "unknown argument $1 (run, start, stop or status)" ;;
esac
