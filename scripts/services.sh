#!/usr/bin/env bash
# Makes sure a Redis and a Postgres answer for boxoffice, and writes the URLs to
# use into .dev/env (the Makefile sources it).
#
# For each of REDIS_URL and DATABASE_URL (API.md defaults when unset):
#   - something answers and lets us in: use it;
#   - nothing answers on a loopback address: start a project-local server there;
#   - something answers but refuses us (say, a system Postgres with password
#     auth) and the URL was not given explicitly: start a project-local server on
#     a spare port instead, and use that.
# Missing server binaries are installed with apt-get. No system configuration is
# changed: project-local servers live under .dev/ and listen on 127.0.0.1 only.
#
#   scripts/services.sh          ensure both are up
#   scripts/services.sh browser  ensure the browser test's tools instead (make test):
#                                Debian's chromium and chromium-driver, and a
#                                Python venv under .dev/ with tests/browser/requirements.txt
#   scripts/services.sh prometheus  ensure the Prometheus test's tools instead (make test):
#                                Debian's prometheus package (prometheus and promtool)
#   scripts/services.sh stop     stop the project-local servers
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEV=$ROOT/.dev
mkdir -p "$DEV"

DEFAULT_REDIS_URL=redis://127.0.0.1:6379
DEFAULT_DATABASE_URL=postgres://postgres@127.0.0.1:5432/boxoffice
SPARE_REDIS_PORT=56379
SPARE_PG_PORT=55432

# shellcheck source=scripts/lib.sh
source scripts/lib.sh

# --- Redis ---------------------------------------------------------------------------
ensure_redis_binaries() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null || apt_install redis-server
}

redis_state() { # answers with: ok | refused | none
  local out
  out=$(timeout 5 redis-cli -u "$1" ping 2>&1) || true
  case "$out" in
    *PONG*) echo ok ;;
    *"Connection refused"*|*"Could not connect"*|"") echo none ;;
    *) echo refused ;;
  esac
}

start_redis() { # start_redis PORT
  local dir=$DEV/redis-$1
  mkdir -p "$dir"
  log "starting project-local redis-server on 127.0.0.1:$1 (data: $dir)"
  redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
  for _ in $(seq 50); do
    [ "$(redis_state "redis://127.0.0.1:$1")" = ok ] && return 0
    sleep 0.1
  done
  die "redis-server did not come up on port $1; see $dir/redis.log"
}

resolve_redis() {
  local url=${REDIS_URL:-$DEFAULT_REDIS_URL} explicit=${REDIS_URL:+1}
  ensure_redis_binaries
  case "$(redis_state "$url")" in
    ok) ;;
    none)
      is_loopback "$(url_host "$url")" || die "no Redis answers at $url"
      start_redis "$(url_port "$url" 6379)" ;;
    refused)
      [ -z "$explicit" ] || die "Redis at $url answers but refuses us; fix REDIS_URL"
      url=$(with_port "$url" $SPARE_REDIS_PORT)
      log "the Redis on the default port is not usable; using a project-local one at $url"
      [ "$(redis_state "$url")" = ok ] || start_redis $SPARE_REDIS_PORT ;;
  esac
  REDIS_URL=$url
  check_redis_version "$url"
}

# Every script starts with `#!lua` (Redis 7 script flags): an older Redis
# cannot compile them, and every request would fail. Say so now instead.
check_redis_version() { # check_redis_version URL
  local version
  version=$(timeout 5 redis-cli -u "$1" info server 2>/dev/null | tr -d '\r' | sed -n 's/^redis_version://p')
  [ -n "$version" ] || return 0
  [ "${version%%.*}" -ge 7 ] || die "Redis at $1 is $version; boxoffice needs Redis 7.0 or later (its scripts use Redis 7 script flags)"
}

# --- Postgres ------------------------------------------------------------------------
PGBIN=
ensure_pg_binaries() {
  PGBIN=$(newest_pg_bin)
  if [ -z "$PGBIN" ] || ! command -v psql >/dev/null; then
    apt_install postgresql
    PGBIN=$(newest_pg_bin)
  fi
  [ -x "$PGBIN/initdb" ] || die "no initdb found under /usr/lib/postgresql after installing postgresql"
}

pg_state() { # answers with: ok | refused | none
  # -w: never prompt for a password (a server that wants one is "refused").
  if PGCONNECT_TIMEOUT=5 timeout 10 psql -w "$(pg_base "$1")/postgres" -qtAc 'select 1' </dev/null >/dev/null 2>&1
  then echo ok; return; fi
  local host port
  host=$(url_host "$1"); port=$(url_port "$1" 5432)
  if timeout 5 "$PGBIN/pg_isready" -q -h "$host" -p "$port" >/dev/null 2>&1; then echo refused
  elif port_answers "$host" "$port"; then echo refused
  else echo none; fi
}

pg_data_dir() { # .dev/ if the server's account can reach it, else a private dir in /var/tmp
  local dir=$DEV/pg-$1
  if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$DEV" 2>/dev/null; then
    local parent
    parent=/var/tmp/boxoffice-$(echo "$ROOT" | cksum | cut -d' ' -f1)
    mkdir -p -m 755 "$parent"
    dir=$parent/pg-$1
  fi
  echo "$dir"
}

start_postgres() { # start_postgres PORT USER
  local port=$1 user=$2 dir
  dir=$(pg_data_dir "$port")
  [ -f "$dir/PG_VERSION" ] ||
    log "creating a project-local Postgres cluster in $dir (trust auth on 127.0.0.1:$port)"
  log "starting project-local Postgres on 127.0.0.1:$port"
  # A development server: fsync off trades crash safety for fast test databases.
  pg_cluster_start "$PGBIN" "$dir" "$dir" "$dir/server.log" "$port" "$user" \
    max_connections=300 shared_buffers=256MB fsync=off full_page_writes=off ||
    die "Postgres did not start; see $dir/server.log"
}

resolve_postgres() {
  local url=${DATABASE_URL:-$DEFAULT_DATABASE_URL} explicit=${DATABASE_URL:+1}
  ensure_pg_binaries
  case "$(pg_state "$url")" in
    ok) ;;
    none)
      is_loopback "$(url_host "$url")" || die "no Postgres answers at $url"
      start_postgres "$(url_port "$url" 5432)" "$(url_user "$url")" ;;
    refused)
      [ -z "$explicit" ] || die "Postgres at $url answers but refuses us; fix DATABASE_URL"
      url=$(with_port "$url" $SPARE_PG_PORT)
      log "the Postgres on the default port is not usable; using a project-local one at $url"
      [ "$(pg_state "$url")" = ok ] || start_postgres $SPARE_PG_PORT "$(url_user "$url")" ;;
  esac
  [ "$(pg_state "$url")" = ok ] || die "Postgres at $url still does not let us in"
  DATABASE_URL=$url
}

stop_all() {
  local d
  for d in "$DEV"/redis-*; do
    [ -d "$d" ] || continue
    # Asked by port, never by a pid file that may be stale after a reboot.
    redis-cli -p "${d##*-}" shutdown nosave >/dev/null 2>&1 && log "stopped redis ($d)"
  done
  for d in "$DEV"/pg-* /var/tmp/boxoffice-"$(echo "$ROOT" | cksum | cut -d' ' -f1)"/pg-*; do
    [ -f "$d/postmaster.pid" ] || continue
    ensure_pg_binaries
    run_as_pg "$PGBIN/pg_ctl" -D "$d" -m fast stop >/dev/null && log "stopped postgres ($d)"
  done
  return 0
}

# --- The browser test's tools (tests/browser/) -------------------------------------
# Chromium and its WebDriver from Debian's packages (a test tool's own browser
# download does not work offline); selenium from PyPI into a venv of the
# project's, so no system Python is changed (Debian's refuses `pip install`).
BROWSER_VENV=$DEV/browser-venv
BROWSER_REQS=$ROOT/tests/browser/requirements.txt
ensure_browser_tools() {
  { command -v chromium && command -v chromedriver; } >/dev/null || apt_install chromium chromium-driver
  need python3 python3
  local py=$BROWSER_VENV/bin/python
  # The venv is (re)filled when it lacks the pinned requirements.
  if [ -x "$py" ] && cmp -s "$BROWSER_REQS" "$BROWSER_VENV/requirements.txt" && "$py" -c 'import selenium' 2>/dev/null
  then return 0; fi
  if [ ! -x "$py" ]; then
    # Debian's python3 has no venv (ensurepip) without python3-venv.
    python3 -m venv "$BROWSER_VENV" >/dev/null 2>&1 || {
      rm -rf "$BROWSER_VENV"; apt_install python3-venv; python3 -m venv "$BROWSER_VENV"; }
  fi
  log "installing $(tr '\n' ' ' < "$BROWSER_REQS")from PyPI into $BROWSER_VENV"
  "$py" -m pip install -q --disable-pip-version-check -r "$BROWSER_REQS" ||
    die "pip could not install $BROWSER_REQS into $BROWSER_VENV"
  cp "$BROWSER_REQS" "$BROWSER_VENV/requirements.txt"
}

# --- The Prometheus test's tools (tests/prometheus/) -----------------------------
# Debian's prometheus package brings both binaries. Its recommended node exporter
# is left out: the test scrapes boxoffice only. Where an init system runs, the
# package starts its own service on :9090; the test never uses it (it runs a
# private Prometheus on a free port).
ensure_prometheus_tools() {
  command -v prometheus >/dev/null && command -v promtool >/dev/null && return 0
  apt_install --no-install-recommends prometheus
  command -v promtool >/dev/null || die "no promtool on PATH after installing prometheus"
}

case "${1:-}" in
  stop) stop_all; exit 0 ;;
  browser) ensure_browser_tools; exit 0 ;;
  prometheus) ensure_prometheus_tools; exit 0 ;;
  "") ;;
  *) die "unknown argument $1 (none, browser, prometheus or stop)" ;;
esac

resolve_redis
resolve_postgres
cat > "$DEV/env" <<EOF
export REDIS_URL='$REDIS_URL'
export DATABASE_URL='$DATABASE_URL'
export PG_BASE='$(pg_base "$DATABASE_URL")'
EOF
log "redis    $REDIS_URL"
log "postgres $DATABASE_URL"
