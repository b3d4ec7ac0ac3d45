#!/usr/bin/env bash
# The fan page in a real browser: starts the release binary on a free loopback
# port with a Postgres database and a Redis key prefix of its own, runs
# tests/browser/fan_page.py (selenium driving headless Chromium) against it,
# then stops the server and removes the database and the keys, pass or fail.
#
#   make test-browser          services, tools, release build, then this
#   tests/browser/run.sh       once those are there (make test runs it too)
#
# Needs REDIS_URL and DATABASE_URL (from .dev/env, which scripts/services.sh
# writes), the release binary (target/release/boxoffice) and the tools of
# `scripts/services.sh browser` (chromium, chromedriver, .dev/browser-venv).
# Screenshots and the server's log go to target/browser/ (BROWSER_OUT);
# UPDATE_SCREENSHOTS=1 also copies the ones README shows to docs/screenshots/
# after a pass.
set -euo pipefail
cd "$(dirname "$0")/../.."
LOG_NAME=browser-test
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

if [ -z "${REDIS_URL:-}" ] || [ -z "${DATABASE_URL:-}" ]; then
  [ -f .dev/env ] || die "no REDIS_URL/DATABASE_URL and no .dev/env: run scripts/services.sh (or make test-browser)"
  # shellcheck source=/dev/null
  source .dev/env
fi
PY=.dev/browser-venv/bin/python
BIN=target/release/boxoffice
[ -x "$PY" ] || die "no $PY: run scripts/services.sh browser (or make test-browser)"
[ -x "$BIN" ] || die "no $BIN: run cargo build --release --locked (or make test-browser)"
command -v chromedriver >/dev/null || die "no chromedriver: run scripts/services.sh browser"

OUT=${BROWSER_OUT:-target/browser}
mkdir -p "$OUT"
rm -f "$OUT"/*.png

# Named as tests/common names its own (bo_test_<kind>_<pid>_<hex>), so a run
# killed before its clean-up is swept by the next cargo test once $$ is dead.
TAG=$$_$(printf '%x' "$(date +%s%N)")
DB=bo_test_browser_$TAG
PREFIX=bo_test_keys_$TAG
BASE_PG=$(pg_base "$DATABASE_URL")
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
SERVER_PID=

cleanup() {
  local rc=$?
  stop_pid "$SERVER_PID"
  drop_test_data "$BASE_PG" "$DB" "$PREFIX"
  if [ "$rc" != 0 ]; then
    log "FAILED; the server's log (last lines of $OUT/server.log):"
    tail -n 30 "$OUT/server.log" >&2 || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ADMIN_KEY=browser-$TAG
HTTP_ADDR=127.0.0.1:$PORT DATABASE_URL=$BASE_PG/$DB REDIS_URL=$REDIS_URL REDIS_PREFIX=$PREFIX \
  ADMIN_KEY=$ADMIN_KEY AUTH_SECRET=browser-test-secret-$TAG RUST_LOG=warn \
  "$BIN" serve >"$OUT/server.log" 2>&1 &
SERVER_PID=$!

BASE_URL=http://127.0.0.1:$PORT ADMIN_KEY=$ADMIN_KEY BROWSER_OUT=$OUT SERVER_PID=$SERVER_PID \
  "$PY" tests/browser/fan_page.py

if [ -n "${UPDATE_SCREENSHOTS:-}" ]; then
  mkdir -p docs/screenshots
  for pair in 01-waiting-paused:waiting-paused 03-pre-queue-countdown:pre-queue-countdown \
              05-hold:seat-hold 07b-processed:confirmed 08-b-seat-sold-phone:phone-seat-sold \
              10-sold-out:sold-out; do
    cp "$OUT/${pair%%:*}.png" "docs/screenshots/${pair##*:}.png"
  done
  log "copied README's screenshots to docs/screenshots/"
fi
