#!/usr/bin/env bash
# schemathesis against the live release server: every operation of
# /openapi.json gets a bounded number of generated requests (valid and
# invalid), and every answer must be no 5xx and match the document (status,
# content type, headers, body schema).
#
#   tests/openapi/run.sh [ARG...]   once services and the release binary are there
#                                   (make test runs it); ARGs go to `schemathesis run`,
#                                   e.g. --checks all, --report har, --seed N
#
# Starts target/release/boxoffice on a free loopback port with a Postgres
# database and a Redis key prefix of its own, mints a user and an admitted
# queue token for a concert with seats (so the gated operations are reached,
# not only refused), runs schemathesis, then stops the server and removes the
# database and the keys, pass or fail. schemathesis comes from PyPI into a venv
# of the project's (.dev/openapi-venv) the first time: no system Python is
# changed. OPENAPI_EXAMPLES (default 25) bounds the test cases per operation;
# the server's log goes to target/openapi/ (OPENAPI_OUT).
set -euo pipefail
cd "$(dirname "$0")/../.."
LOG_NAME=openapi-test
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

if [ -z "${REDIS_URL:-}" ] || [ -z "${DATABASE_URL:-}" ]; then
  [ -f .dev/env ] || die "no REDIS_URL/DATABASE_URL and no .dev/env: run scripts/services.sh (or make test)"
  # shellcheck source=/dev/null
  source .dev/env
fi
BIN=target/release/boxoffice
[ -x "$BIN" ] || die "no $BIN: run cargo build --release --locked (or make test)"
EXAMPLES=${OPENAPI_EXAMPLES:-25}
OUT=${OPENAPI_OUT:-target/openapi}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# --- schemathesis, in a venv of the project's, (re)filled when the pin changes
VENV=.dev/openapi-venv
REQS=tests/openapi/requirements.txt
PY=$VENV/bin/python
if ! { [ -x "$PY" ] && cmp -s "$REQS" "$VENV/requirements.txt" && "$VENV/bin/schemathesis" --version >/dev/null 2>&1; }; then
  need python3 python3
  if [ ! -x "$PY" ]; then
    # Debian's python3 has no venv (ensurepip) without python3-venv.
    python3 -m venv "$VENV" >/dev/null 2>&1 || { rm -rf "$VENV"; apt_install python3-venv; python3 -m venv "$VENV"; }
  fi
  log "installing $(tr '\n' ' ' < "$REQS")from PyPI into $VENV"
  "$PY" -m pip install -q --disable-pip-version-check -r "$REQS" || die "pip could not install $REQS into $VENV"
  cp "$REQS" "$VENV/requirements.txt"
fi

# Named as tests/common names its own (bo_test_<kind>_<pid>_<hex>), so a run
# killed before its clean-up is swept by the next cargo test once $$ is dead.
TAG=$$_$(printf '%x' "$(date +%s%N)")
DB=bo_test_openapi_$TAG
PREFIX=bo_test_keys_$TAG
BASE_PG=$(pg_base "$DATABASE_URL")
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
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

psql -q "$BASE_PG/postgres" -c "CREATE DATABASE \"$DB\"" >/dev/null
ADMIN_KEY=openapi-$TAG
HTTP_ADDR=127.0.0.1:$PORT DATABASE_URL=$BASE_PG/$DB REDIS_URL=$REDIS_URL REDIS_PREFIX=$PREFIX \
  ADMIN_KEY=$ADMIN_KEY AUTH_SECRET=openapi-test-secret-$TAG RUST_LOG=warn RATE_LIMITS=off \
  "$BIN" serve >"$OUT/server.log" 2>&1 &
SERVER_PID=$!

# The scene, through the API itself: a user with money, concert 1 with
# schedule 1 (the ids the document's examples use), and the user's queue token
# for it, admitted.
BASE=$BASE ADMIN_KEY=$ADMIN_KEY "$PY" - >"$OUT/scene" <<'PY'
import json, os, time, urllib.request

base, admin = os.environ["BASE"], os.environ["ADMIN_KEY"]

def call(method, path, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)

deadline = time.time() + 60
while True:
    try:
        call("GET", "/health")
        break
    except OSError:
        if time.time() > deadline:
            raise SystemExit("the server did not answer /health in 60 s")
        time.sleep(0.2)
auth = {"Authorization": "Bearer " + call("POST", "/users", {})["access_token"]}
call("POST", "/balance/charge", {"amount": 1_000_000}, auth)
adm = {"X-Admin-Key": admin}
concert = call("POST", "/admin/concerts", {"title": "OpenAPI", "artist": "schemathesis"}, adm)["id"]
call("POST", f"/admin/concerts/{concert}/schedules",
     {"start_at": "2027-01-01T19:00:00Z", "seat_count": 50, "price": 1000}, adm)
token = call("POST", "/queue/tokens", {"concert_id": concert}, auth)["token"]
while call("GET", f"/queue/tokens/{token}", headers=auth)["status"] != "ACTIVE":
    if time.time() > deadline:
        raise SystemExit("the queue token was not admitted in time")
    time.sleep(0.2)
print(auth["Authorization"])
print(token)
PY
AUTHORIZATION=$(sed -n 1p "$OUT/scene")
QUEUE_TOKEN=$(sed -n 2p "$OUT/scene")

log "schemathesis: $EXAMPLES test cases per operation against $BASE"
SCHEMATHESIS=$PWD/$VENV/bin/schemathesis
# Run from $OUT: schemathesis writes nothing into the checkout.
cd "$OUT"
"$SCHEMATHESIS" run "$BASE/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --max-examples "$EXAMPLES" \
  --workers 2 \
  --generation-database none \
  --request-timeout 30 \
  --no-color \
  -H "Authorization: $AUTHORIZATION" \
  -H "X-Admin-Key: $ADMIN_KEY" \
  -H "X-Queue-Token: $QUEUE_TOKEN" \
  "$@"
