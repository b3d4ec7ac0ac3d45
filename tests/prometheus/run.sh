#!/usr/bin/env bash
# The dashboard and the alerts, proved by a real Prometheus:
#   1. promtool checks deploy/prometheus/prometheus.yml and alerts.yml, and
#      runs the alerts' unit tests (alerts_test.yml);
#   2. the release binary starts on a free loopback port with a Postgres
#      database and a Redis key prefix of its own, and a private Prometheus
#      (a temporary copy of deploy/prometheus/ scraping only that server every
#      second, its TSDB in a temporary directory, on another free port)
#      scrapes it;
#   3. tests/prometheus/check.py drives a short journey load, then runs every
#      panel query of deploy/grafana/boxoffice.json and every alert expression
#      through Prometheus's HTTP API (each must parse, each panel must return
#      data), and makes one alert fire (a copy with short windows);
# then stops both servers and removes the database, the keys and the
# temporary directory, pass or fail. About 30 seconds.
#
#   make test-prometheus       services, promtool, release build, then this
#   tests/prometheus/run.sh    once those are there (make test runs it too)
#
# Needs REDIS_URL and DATABASE_URL (from .dev/env, which scripts/services.sh
# writes), the release binary, and prometheus and promtool (`scripts/services.sh
# prometheus` installs Debian's package). The query table, the server's and
# Prometheus's logs go to target/prometheus/ (PROM_OUT).
set -euo pipefail
cd "$(dirname "$0")/../.."
LOG_NAME=prometheus-test
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

if [ -z "${REDIS_URL:-}" ] || [ -z "${DATABASE_URL:-}" ]; then
  [ -f .dev/env ] || die "no REDIS_URL/DATABASE_URL and no .dev/env: run scripts/services.sh (or make test-prometheus)"
  # shellcheck source=/dev/null
  source .dev/env
fi
BIN=target/release/boxoffice
[ -x "$BIN" ] || die "no $BIN: run cargo build --release --locked (or make test-prometheus)"
for tool in prometheus promtool python3; do
  command -v "$tool" >/dev/null || die "no $tool: run scripts/services.sh prometheus (or make test-prometheus)"
done

OUT=${PROM_OUT:-target/prometheus}
mkdir -p "$OUT"
rm -f "$OUT"/*.log "$OUT"/queries.md
started=$(date +%s)

# --- 1. promtool on the committed files -------------------------------------------------
log "promtool check config deploy/prometheus/prometheus.yml"
promtool check config deploy/prometheus/prometheus.yml
log "promtool check rules deploy/prometheus/alerts.yml"
promtool check rules deploy/prometheus/alerts.yml
log "promtool test rules deploy/prometheus/alerts_test.yml"
promtool test rules deploy/prometheus/alerts_test.yml

# --- 2. boxoffice and a private Prometheus ------------------------------------------------
# Named as tests/common names its own (bo_test_<kind>_<pid>_<hex>), so a run
# killed before its clean-up is swept by the next cargo test once $$ is dead.
TAG=$$_$(printf '%x' "$(date +%s%N)")
DB=bo_test_prometheus_$TAG
PREFIX=bo_test_keys_$TAG
BASE_PG=$(pg_base "$DATABASE_URL")
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
PROM_PORT=$(free_port)
while [ "$PROM_PORT" = "$PORT" ]; do PROM_PORT=$(free_port); done
TMP=$(mktemp -d "${TMPDIR:-/tmp}/boxoffice-prometheus.XXXXXX")
SERVER_PID=
PROM_PID=

cleanup() {
  local rc=$?
  stop_pid "$PROM_PID"
  stop_pid "$SERVER_PID"
  drop_test_data "$BASE_PG" "$DB" "$PREFIX"
  rm -rf "$TMP"
  if [ "$rc" != 0 ]; then
    log "FAILED; last lines of $OUT/server.log and $OUT/prometheus.log:"
    tail -n 20 "$OUT/server.log" >&2 || true
    tail -n 20 "$OUT/prometheus.log" >&2 || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ADMIN_KEY=prometheus-$TAG
HTTP_ADDR=127.0.0.1:$PORT DATABASE_URL=$BASE_PG/$DB REDIS_URL=$REDIS_URL REDIS_PREFIX=$PREFIX \
  ADMIN_KEY=$ADMIN_KEY AUTH_SECRET=prometheus-test-secret-$TAG RUST_LOG=warn RATE_LIMITS=off \
  "$BIN" serve >"$OUT/server.log" 2>&1 &
SERVER_PID=$!

# The committed configuration, with only what a test must change: this
# server as the one target, a 1 s interval, and a place for the firing copy
# of one alert (check.py writes firing-copy.yml, then reloads).
cp -r deploy/prometheus "$TMP/config"
rm -f "$TMP/config/targets/"*.json
printf '[{"targets": ["127.0.0.1:%s"], "labels": {"env": "test"}}]\n' "$PORT" >"$TMP/config/targets/boxoffice.json"
sed -i -E -e 's/^(  scrape_interval:).*/\1 1s/' -e 's/^(  scrape_timeout:).*/\1 1s/' \
  -e 's/^(  evaluation_interval:).*/\1 1s/' -e 's/^(  - alerts\.yml)$/\1\n  - firing-*.yml/' \
  "$TMP/config/prometheus.yml"
for want in '^  scrape_interval: 1s$' '^  scrape_timeout: 1s$' '^  evaluation_interval: 1s$' '^  - firing-\*\.yml$'; do
  grep -qE "$want" "$TMP/config/prometheus.yml" ||
    die "deploy/prometheus/prometheus.yml changed shape: the test copy lacks /$want/ (see tests/prometheus/run.sh)"
done
log "promtool check config on the test copy (target 127.0.0.1:$PORT, 1 s interval)"
promtool check config "$TMP/config/prometheus.yml" >/dev/null

prometheus --config.file="$TMP/config/prometheus.yml" --storage.tsdb.path="$TMP/data" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --web.enable-lifecycle \
  --storage.tsdb.retention.time=1h --log.level=warn >"$OUT/prometheus.log" 2>&1 &
PROM_PID=$!

for _ in $(seq 150); do
  curl -fs "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || die "boxoffice exited at start"
  sleep 0.2
done
curl -fs "http://127.0.0.1:$PORT/ready" >/dev/null || die "boxoffice not ready on 127.0.0.1:$PORT after 30 s"
for _ in $(seq 150); do
  curl -fs "http://127.0.0.1:$PROM_PORT/-/ready" >/dev/null 2>&1 && break
  kill -0 "$PROM_PID" 2>/dev/null || die "prometheus exited at start"
  sleep 0.2
done
curl -fs "http://127.0.0.1:$PROM_PORT/-/ready" >/dev/null || die "prometheus not ready on 127.0.0.1:$PROM_PORT after 30 s"
log "boxoffice on 127.0.0.1:$PORT, prometheus on 127.0.0.1:$PROM_PORT"

# --- 3. load, queries, one alert firing -----------------------------------------------------
BASE_URL=http://127.0.0.1:$PORT PROM_URL=http://127.0.0.1:$PROM_PORT ADMIN_KEY=$ADMIN_KEY \
  RULES_DIR=$TMP/config PROM_OUT=$OUT python3 tests/prometheus/check.py
log "passed in $(($(date +%s) - started)) s"
