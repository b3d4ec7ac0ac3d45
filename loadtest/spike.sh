#!/usr/bin/env bash
# The spike check (`make spike`): USERS fans (default 100 000; scale it down on a
# small machine) run the whole journey against a schedule with five times fewer
# seats than fans: create user, charge, join, poll until ACTIVE, browse, hold,
# pay. Then, from Postgres and Redis:
#   - no seat was sold twice;
#   - every payment answered 201 is in Postgres once, CONFIRMED, and there is
#     no sale that was not answered 201;
#   - the ledger balances for every user (balance = charges - uses);
#   - Redis shows exactly the sold seats as SOLD;
#   - no request got a 5xx or went unanswered, and no fan gave up: a fan
#     refused `409 sold_out`, or still WAITING when the room turns SOLD_OUT,
#     ends at once as sold-out; a fan not admitted while seats remained (its
#     token ended, or BO_WAIT_SECS, 600 s, passed) gave up.
#
#   loadtest/spike.sh [USERS]          SPIKE_GOOSE_USERS=500 concurrent fans by default
#   RECORD=1 loadtest/spike.sh         (make spike RECORD=1) also append to RESULTS.md
#   SPIKE_INSTANCES=3 loadtest/spike.sh  the fans go through haproxy to 3 instances
#                                      sharing the database and key prefix
#                                      (scripts/run-many.sh) instead of to one server
# The checks and goose's report go to loadtest/out/ (not tracked); with RECORD=1
# the section is appended to loadtest/RESULTS.md and the report kept as
# loadtest/reports/spike-USERS.md.
# (USERS is rounded up to a multiple of SPIKE_GOOSE_USERS: each runs the same
# number of journeys.)
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${1:-100000}
GOOSE_USERS=${SPIKE_GOOSE_USERS:-500}
(( GOOSE_USERS > USERS )) && GOOSE_USERS=$USERS
SEATS=$(( USERS / 5 > 0 ? USERS / 5 : 1 ))
PORT=18083
SECRET=spike-secret-0123456789abcdef
ADMIN=spike-admin
run="spike-$$"
# shellcheck source=loadtest/lib.sh
source loadtest/lib.sh
trap lib_cleanup EXIT
db="bo_${run//[^a-z0-9]/_}_journey"
q() { psql "$PG_BASE/$db" -qtAX -v ON_ERROR_STOP=1 -c "$1"; }

INSTANCES=${SPIKE_INSTANCES:-1}
{ [[ $INSTANCES =~ ^[0-9]+$ ]] && [ "$INSTANCES" -ge 1 ]; } || { echo "spike: SPIKE_INSTANCES must be 1 or more" >&2; exit 2; }
build_all
settings=(ADMISSION_RATE=2000 MAX_ACTIVE=1000 ACTIVE_TTL_SECS=300 HOLD_TTL_SECS=120 WAITING_IDLE_SECS=600)
if [ "$INSTANCES" = 1 ]; then
  start_boxoffice journey "$PORT" "${settings[@]}"
else
  start_many journey "$PORT" "$INSTANCES" "${settings[@]}"
fi
servers=("${pids[@]}")

host=http://127.0.0.1:$PORT
concert=$(curl -fs -X POST "$host/admin/concerts" -H "x-admin-key: $ADMIN" -d '{"title": "Spike"}' | sed -E 's/.*"id":([0-9]+).*/\1/')
schedule=$(curl -fs -X POST "$host/admin/concerts/$concert/schedules" -H "x-admin-key: $ADMIN" \
  -d "{\"start_at\": \"2027-06-01T19:00:00Z\", \"seat_count\": $SEATS, \"price\": 1000}" | sed -E 's/.*"id":([0-9]+).*/\1/')
where="one server"
[ "$INSTANCES" = 1 ] || where="$INSTANCES instances behind haproxy"
echo "spike: $USERS fans ($GOOSE_USERS at a time), $SEATS seats, concert $concert schedule $schedule, $where" >&2

started=$(date +%s)
BO_CONCERT=$concert BO_SCHEDULE=$schedule BO_SEATS=$SEATS BO_PRICE=1000 BO_RESULTS="$work/paid.txt" \
BO_AUTH_SECRET=$SECRET BO_ADMIN_KEY=$ADMIN \
  loadtest/target/release/boxoffice-load --host "$host" --scenarios journey \
    -u "$GOOSE_USERS" -r "$GOOSE_USERS" --iterations $(( (USERS + GOOSE_USERS - 1) / GOOSE_USERS )) \
    --report-file "$work/spike-report.md" >"$work/goose.out" 2>"$work/goose.err" || {
      tail -20 "$work/goose.err" >&2; echo "spike: the load run failed" >&2; exit 1; }
elapsed=$(( $(date +%s) - started ))
summary=$(grep '^journeys:' "$work/goose.out" | tail -1)
echo "spike: $summary (${elapsed}s)" >&2
# With instances: how many requests haproxy gave each (lbtot, "picked").
if [ "$INSTANCES" != 1 ]; then
  picked=$(many_status | awk '$1 ~ /^i[0-9]+$/ { sub("picked=", "", $3); print $3 }')
  echo "spike: requests per instance: $(paste -sd/ <<<"$picked")" >&2
fi

fail=0
checks="$work/checks"
check() { # check <description> <ok?>
  local line
  if [ "$2" = yes ]; then line="PASS  $1"; else line="FAIL  $1"; fail=1; fi
  echo "$line" | tee -a "$checks"
}
paid=$(wc -l <"$work/paid.txt")
q "CREATE TABLE spike_paid (payment_id bigint, reservation_id bigint, user_id bigint)"
psql "$PG_BASE/$db" -qtAX -v ON_ERROR_STOP=1 -c "\\copy spike_paid FROM '$work/paid.txt' WITH (DELIMITER ' ')"
# Counted from payments, not from CONFIRMED rows (the unique index already
# forbids two of those): two paid reservations of one seat would show here.
twice=$(q "SELECT count(*) FROM (SELECT r.seat_id FROM payment p JOIN reservation r ON r.id = p.reservation_id
                                  GROUP BY r.seat_id HAVING count(*) > 1) t")
paid_seats=$(q "SELECT count(DISTINCT r.seat_id) FROM spike_paid s JOIN reservation r ON r.id = s.reservation_id")
confirmed=$(q "SELECT count(*) FROM reservation WHERE status = 'CONFIRMED'")
matched=$(q "SELECT count(DISTINCT p.payment_id) FROM spike_paid p
               JOIN payment y ON y.id = p.payment_id AND y.reservation_id = p.reservation_id
                             AND y.user_id = p.user_id
               JOIN reservation r ON r.id = y.reservation_id AND r.status = 'CONFIRMED'")
unbalanced=$(q "SELECT count(*) FROM balance b WHERE b.balance <> (
                  SELECT COALESCE(sum(CASE h.type WHEN 'USE' THEN -h.amount ELSE h.amount END), 0)
                    FROM balance_history h WHERE h.user_id = b.user_id)")
negative=$(q "SELECT count(*) FROM balance WHERE balance < 0")
# Every payment has exactly one USE row of its amount (migration 0003 named the
# columns balance.balance and payment.price; balance_history keeps amount).
unmatched_use=$(q "SELECT count(*) FROM payment p WHERE (SELECT count(*) FROM balance_history h
                     WHERE h.payment_id = p.id AND h.type = 'USE' AND h.amount = p.price) <> 1")
sold_bits=$(rcli BITCOUNT "$prefix:{c:$concert}:s:$schedule:sold")
# The SOLD bits are the sold seats themselves: GETBIT at each sold seat's index.
sold_marked=$(q "SELECT 'GETBIT $prefix:{c:$concert}:s:$schedule:sold ' || x.idx FROM (
                   SELECT id, row_number() OVER (ORDER BY seat_no) - 1 AS idx FROM seat
                    WHERE concert_schedule_id = $schedule) x
                   JOIN reservation r ON r.seat_id = x.id AND r.status = 'CONFIRMED'" |
              rcli | grep -c '^1$' || true)
server_errors=$(sed -E 's/.*5xx answers: ([0-9]+).*/\1/' <<<"$summary")
no_answer=$(sed -E 's/.*no answer: ([0-9]+).*/\1/' <<<"$summary")
gave_up=$(sed -E 's/.*gave-up ([0-9]+).*/\1/' <<<"$summary")
server_alive=yes
for p in "${servers[@]}"; do kill -0 "$p" 2>/dev/null || server_alive=no; done

check "no seat sold twice ($twice seats paid twice; $paid_seats distinct seats for $paid payments)" \
  "$([ "$twice" = 0 ] && [ "$paid_seats" = "$paid" ] && echo yes || echo no)"
check "every 201 payment is in Postgres once, CONFIRMED ($matched of $paid)" \
  "$([ "$matched" = "$paid" ] && [ "$(sort -u "$work/paid.txt" | wc -l)" = "$paid" ] && echo yes || echo no)"
check "no sale without a 201 ($confirmed CONFIRMED, $paid answered 201)" "$([ "$confirmed" = "$paid" ] && echo yes || echo no)"
check "sold out, never oversold ($confirmed sold of $SEATS seats, 5x more fans)" "$([ "$confirmed" = "$SEATS" ] && echo yes || echo no)"
check "ledger balances for every user ($unbalanced off, $negative negative, $unmatched_use payments without one USE row)" \
  "$([ "$unbalanced" = 0 ] && [ "$negative" = 0 ] && [ "$unmatched_use" = 0 ] && echo yes || echo no)"
if [ "$INSTANCES" != 1 ]; then
  # Round robin: each instance within 20 % of an even share.
  spread=$(awk -v n="$INSTANCES" '{ v[NR] = $1; t += $1 } END {
             ok = (NR == n && t > 0); for (i = 1; i <= NR; i++) if (v[i] < 0.8 * t / n || v[i] > 1.2 * t / n) ok = 0
             print (ok ? "yes" : "no") }' <<<"$picked")
  check "haproxy spread the requests over all $INSTANCES instances, each within 20 % of an even share ($(paste -sd/ <<<"$picked"))" "$spread"
fi
check "Redis shows exactly the sold seats SOLD ($sold_bits bits; $sold_marked of $confirmed sold seats set)" \
  "$([ "$sold_bits" = "$confirmed" ] && [ "$sold_marked" = "$confirmed" ] && echo yes || echo no)"
check "no 5xx, every request answered, no fan gave up, $([ "$INSTANCES" = 1 ] && echo "server up" || echo "all $INSTANCES instances up") ($server_errors 5xx, $no_answer unanswered, $gave_up gave up)" \
  "$([ "$server_errors" = 0 ] && [ "$no_answer" = 0 ] && [ "$gave_up" = 0 ] && [ "$server_alive" = yes ] && echo yes || echo no)"

out=$(out_file "spike-$USERS")
report=${out%.md}-goose.md
cp "$work/spike-report.md" "$report" 2>/dev/null || true
when=$(date -u +%Y-%m-%dT%H:%M:%SZ)
section() { # section <goose's report, relative to the file the section goes in>
  echo
  echo "### Spike check: $USERS fans, $SEATS seats ($when)"
  echo
  echo "$GOOSE_USERS fans at a time, $where, ADMISSION_RATE=2000, MAX_ACTIVE=1000; ${elapsed} s;"
  echo "$summary. goose's report: \`$1\`."
  echo
  sed 's/^/    /' "$checks"
}
section "$(basename "$report")" >"$out"
if [ "${RECORD:-}" = 1 ]; then
  mkdir -p loadtest/reports
  cp "$work/spike-report.md" "loadtest/reports/spike-$USERS.md" 2>/dev/null || true
  section "reports/spike-$USERS.md" >>loadtest/RESULTS.md
fi
written "$out"
exit $fail
