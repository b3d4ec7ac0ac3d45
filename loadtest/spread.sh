#!/usr/bin/env bash
# Spread (`make spread`): how the load of many concerts falls on the masters of
# a Redis Cluster. One boxoffice on the cluster (`make cluster`, or the cluster
# REDIS_URL names), SPREAD_CONCERTS concerts (30) with a schedule each, the
# same traffic on each (SPREAD_FANS fans join, each polls SPREAD_POLLS times);
# then, per master: the concerts whose slot it holds and the scripts it ran
# (INFO commandstats, cmdstat_evalsha calls, before and after). Measured twice:
# as the concerts' hash tags fall (CRC16 slots: a deal of 30 cards, often
# uneven), then after `scripts/cluster.sh place` has dealt their slots over the
# masters round-robin. Passes when, placed, every master ran within ±20 % of
# its share (1/masters) of the calls.
#
#   loadtest/spread.sh              30 concerts, 40 fans each, 10 polls each
#   RECORD=1 loadtest/spread.sh     (make spread RECORD=1) also append to RESULTS.md
set -euo pipefail
cd "$(dirname "$0")/.."
CONCERTS=${SPREAD_CONCERTS:-30}
FANS=${SPREAD_FANS:-40}
POLLS=${SPREAD_POLLS:-10}
SECRET=spread-secret-0123456789abcdef
ADMIN=spread-admin
run="spread-$$"
if [[ ${REDIS_URL:-} != redis-cluster://* ]]; then
  scripts/cluster.sh >&2
  # shellcheck disable=SC1091
  source .dev/cluster/env
  REDIS_URL=$REDIS_CLUSTER_URL
fi
export REDIS_URL
# shellcheck source=loadtest/lib.sh
source loadtest/lib.sh
trap lib_cleanup EXIT
[ -n "$cluster_url" ] || { echo "spread: REDIS_URL must be a cluster (redis-cluster://...)" >&2; exit 1; }
seed=${cluster_url#*://}; seed=${seed%%[/?]*}

masters() { # host:port of each master, sorted
  redis-cli -h "${seed%:*}" -p "${seed##*:}" cluster nodes |
    awk '$3 ~ /master/ && $3 !~ /fail/ && $8 == "connected" {split($2, a, "@"); print a[1]}' | sort
}
evalsha_calls() { # evalsha_calls host:port
  redis-cli -h "${1%:*}" -p "${1##*:}" info commandstats | tr -d '\r' |
    sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),.*/\1/p' | grep . || echo 0
}

build_all

# concerts <port>: SPREAD_CONCERTS concerts with a schedule each, on the
# boxoffice on <port>; their ids in `ids`.
concerts() {
  local id
  ids=()
  for _ in $(seq "$CONCERTS"); do
    id=$(curl -fs -X POST "$host/admin/concerts" -H "x-admin-key: $ADMIN" -d '{"title": "Spread"}' |
      sed -E 's/.*"id":([0-9]+).*/\1/')
    curl -fs -X POST "$host/admin/concerts/$id/schedules" -H "x-admin-key: $ADMIN" \
      -d '{"start_at": "2027-06-01T19:00:00Z", "seats": [{"seat_no": 1, "price": 100}]}' >/dev/null
    ids+=("$id")
  done
}

# load: the same traffic on every concert: FANS new fans join, each polls
# POLLS times, from 8 threads (python3's standard library only).
load() {
  HOST=$host FANS=$FANS POLLS=$POLLS IDS="${ids[*]}" python3 - <<'PY'
import http.client, json, os, threading, urllib.parse
host = urllib.parse.urlparse(os.environ["HOST"])
fans, polls = int(os.environ["FANS"]), int(os.environ["POLLS"])
jobs = [(c, i) for c in os.environ["IDS"].split() for i in range(fans)]
errors = []
def fan(conn, concert):
    conn.request("POST", "/users", body="{}", headers={"content-type": "application/json"})
    auth = "Bearer " + json.loads(conn.getresponse().read())["access_token"]
    h = {"authorization": auth, "content-type": "application/json"}
    conn.request("POST", "/queue/tokens", body=json.dumps({"concert_id": int(concert)}), headers=h)
    r = conn.getresponse(); token = json.loads(r.read()).get("token")
    if r.status not in (200, 201) or not token:
        errors.append(f"join {concert}: {r.status}"); return
    for _ in range(polls):
        conn.request("GET", f"/queue/tokens/{token}", headers=h)
        r = conn.getresponse(); r.read()
        if r.status != 200:
            errors.append(f"poll {concert}: {r.status}")
def worker(part):
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
    for concert, _ in part:
        fan(conn, concert)
threads = [threading.Thread(target=worker, args=(jobs[k::8],)) for k in range(8)]
for t in threads: t.start()
for t in threads: t.join()
if errors:
    raise SystemExit(f"spread: {len(errors)} failed requests, first: {errors[0]}")
PY
}

# measure <title>: the load once, and per master the concerts it serves and
# the script calls it ran; prints a table, returns 1 when a master is more
# than 20 % off its share.
measure() {
  local n id slot owner total=0 rc=0
  declare -A before=() calls=() concerts=()
  mapfile -t nodes < <(masters)
  for n in "${nodes[@]}"; do before[$n]=$(evalsha_calls "$n"); concerts[${n##*:}]=0; done
  load || return 1
  for n in "${nodes[@]}"; do
    calls[$n]=$(( $(evalsha_calls "$n") - ${before[$n]} ))
    total=$((total + calls[$n]))
  done
  [ "$total" -gt 0 ] || return 1
  for id in "${ids[@]}"; do
    slot=$(redis-cli -h "${seed%:*}" -p "${seed##*:}" cluster keyslot "{c:$id}" | tr -d '\r')
    owner=$(redis-cli -h "${seed%:*}" -p "${seed##*:}" cluster nodes | tr -d '\r' |
      awk -v s="$slot" '$3 ~ /master/ && $3 !~ /fail/ {for (i = 9; i <= NF; i++) {n = split($i, r, "-"); if (s >= r[1] && s <= (n == 2 ? r[2] : r[1])) {split($2, a, "[:@]"); print a[2]}}}')
    concerts[$owner]=$(( ${concerts[$owner]:-0} + 1 ))
  done
  echo "**$1** (a fair share is $(awk -v n="${#nodes[@]}" 'BEGIN {printf "%.1f", 100 / n}') %, ±20 % of it allowed)"
  echo
  echo "| master | concerts | script calls | share | vs fair |"
  echo "|---|---:|---:|---:|---:|"
  for n in "${nodes[@]}"; do
    awk -v m="$n" -v c="${concerts[${n##*:}]}" -v k="${calls[$n]}" -v t="$total" -v n="${#nodes[@]}" \
      'BEGIN {s = k / t; printf "| %s | %d | %d | %.1f %% | %+.0f %% |\n", m, c, k, 100 * s, 100 * (s * n - 1)}'
    awk -v k="${calls[$n]}" -v t="$total" -v n="${#nodes[@]}" 'BEGIN {d = k / t * n - 1; exit !(d <= 0.2 && d >= -0.2)}' || rc=1
  done
  echo
  return $rc
}

hashed_ok=1; placed_ok=1
start_boxoffice hashed 18086 ADMISSION_RATE=100 MAX_ACTIVE=0
host=http://127.0.0.1:18086
concerts
hashed=$(measure "As the slots lie: each concert on the master serving its tag's CRC16 slot") || hashed_ok=
# The lineup is placed before the sale, with no instance running: fred 10's
# cluster router can wedge when many slots move under it (see docs/scaling.md).
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
scripts/cluster.sh place "${ids[@]}" >&2
first=("${ids[@]}")
start_boxoffice placed 18087 ADMISSION_RATE=100 MAX_ACTIVE=0
host=http://127.0.0.1:18087
concerts
[ "${ids[*]}" = "${first[*]}" ] || { echo "spread: the second database gave other concert ids" >&2; exit 1; }
placed=$(measure "Placed: the lineup's slots dealt round-robin (scripts/cluster.sh place)") || placed_ok=
table=$(
  echo "### Spread: $CONCERTS concerts on the masters of a Redis Cluster ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  echo
  echo "Concerts ${ids[0]}-${ids[-1]}, each $FANS new fans joining and polling $POLLS times (plus the"
  echo "admission ticks), twice; per master the script calls it ran (INFO commandstats, evalsha calls)."
  echo
  echo "$hashed"
  echo
  echo "$placed"
)
echo "$table"
out=$(out_file spread)
printf '\n%s\n' "$table" >"$out"
[ "${RECORD:-}" != 1 ] || cat "$out" >>loadtest/RESULTS.md
written "$out"
[ -n "$hashed_ok" ] || echo "spread: as hashed, a master is more than 20 % off its share (CRC16 deals 30 concerts unevenly)" >&2
[ -n "$placed_ok" ] || { echo "spread: placed, a master is more than 20 % off its share of the calls" >&2; exit 1; }
echo "spread: placed, every master within ±20 % of its share" >&2
