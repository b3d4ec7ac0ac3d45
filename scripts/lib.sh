# shellcheck shell=bash
# scripts/lib.sh: the shell helpers that scripts/services.sh and the load
# runners (loadtest/lib.sh, compare.sh, spike.sh, scale.sh) share: installing
# what is missing, reading Redis and Postgres URLs, running the Postgres tools.
# Sourced, never run; defines functions and nothing else. Messages start with
# "$LOG_NAME:" (default: the calling script's name).

log() { echo "${LOG_NAME:-$(basename "$0" .sh)}: $*" >&2; }
die() { log "$*"; exit 1; }

# --- installing ------------------------------------------------------------------
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root to run: $*"; fi
}

APT_UPDATED=
apt_install() { # apt_install [OPTION...] PACKAGE...: apt-get update once per script, then install
  local names=() a
  for a in "$@"; do [[ $a == -* ]] || names+=("$a"); done # options (--no-install-recommends) are not names
  command -v apt-get >/dev/null || die "${names[*]} missing and there is no apt-get: install ${names[*]} and retry"
  log "installing ${names[*]} with apt-get"
  if [ -z "$APT_UPDATED" ]; then
    as_root apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

need() { # need BINARY PACKAGE: install PACKAGE unless BINARY is on PATH
  command -v "$1" >/dev/null || apt_install "$2"
}

# --- URL parsing: scheme://[user[:pass]@]host[:port][/db][?query] -----------------
url_host() { local r=${1#*://}; r=${r##*@}; r=${r%%/*}; r=${r%%\?*}; echo "${r%%:*}"; }
url_port() { # url_port URL DEFAULT
  local r=${1#*://}; r=${r##*@}; r=${r%%/*}; r=${r%%\?*}
  if [[ $r == *:* ]]; then echo "${r##*:}"; else echo "$2"; fi
}
url_user() { local r=${1#*://}; if [[ $r == *@* ]]; then r=${r%%@*}; echo "${r%%:*}"; else echo postgres; fi; }
is_loopback() { [[ $1 == 127.* || $1 == localhost || $1 == ::1 || $1 == "[::1]" ]]; }
with_port() { # with_port URL PORT -> URL with host:port replaced by 127.0.0.1:PORT
  local scheme=${1%%://*} rest=${1#*://} auth="" path=""
  if [[ $rest == *@* ]]; then auth="${rest%%@*}@"; rest=${rest#*@}; fi
  if [[ $rest == */* ]]; then path="/${rest#*/}"; fi
  echo "${scheme}://${auth}127.0.0.1:$2${path}"
}
# pg_base URL -> the URL without its database (and query): append /<db> to it.
pg_base() { local u=${1%%\?*}; local rest=${u#*://}; if [[ $rest == */* ]]; then echo "${u%/*}"; else echo "$u"; fi; }
port_answers() { timeout 5 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; } # port_answers HOST PORT

# --- Postgres tools ------------------------------------------------------------------
# `|| true`: with no match, ls fails and `set -e` would end the script silently.
newest_pg_bin() { { ls -d /usr/lib/postgresql/*/bin 2>/dev/null || true; } | sort -V | tail -n 1; }

run_as_pg() { # the server refuses to run as root: use the postgres account then
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# pg_cluster_start PGBIN DATADIR SOCKETDIR LOGFILE PORT USER [SETTING=VALUE ...]:
# start a private cluster listening on 127.0.0.1:PORT only, creating it first
# (trust auth, superuser USER) if DATADIR holds none. When we are root the
# server runs as the postgres account, which must be able to reach DATADIR and
# write SOCKETDIR.
pg_cluster_start() {
  local pgbin=$1 data=$2 sockets=$3 logfile=$4 port=$5 user=$6 opts="" s
  shift 6
  if [ ! -f "$data/PG_VERSION" ]; then
    mkdir -p "$data"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$data" && chmod 700 "$data"; fi
    run_as_pg "$pgbin/initdb" -D "$data" -U "$user" --auth=trust --encoding=UTF8 --locale=C >/dev/null
  fi
  for s in "$@"; do opts="$opts -c $s"; done
  run_as_pg "$pgbin/pg_ctl" -D "$data" -l "$logfile" -w -t 60 -o \
    "-c port=$port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$sockets$opts" \
    start >/dev/null
}

# The test runners' clean-up (tests/browser, tests/openapi, tests/prometheus).
stop_pid() { # stop_pid PID: TERM, up to 5 s, then KILL
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 0
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
}

drop_test_data() { # drop_test_data BASE_PG DB PREFIX: the run's database and Redis keys
  psql -q "$1/postgres" -c "DROP DATABASE IF EXISTS \"$2\" WITH (FORCE)" >/dev/null 2>&1 ||
    log "could not drop database $2"
  redis-cli -u "$REDIS_URL" --scan --pattern "$3*" 2>/dev/null |
    xargs -r -d '\n' -n 500 redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || log "could not delete keys $3*"
}
