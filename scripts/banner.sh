#!/usr/bin/env bash
# Printed by `make run` just before the server starts: where it is and how to try it.
addr=${HTTP_ADDR:-127.0.0.1:8080}
cat <<TXT

boxoffice is starting on http://$addr

  The fan page:  http://$addr/        (open it in a browser; /?concert=1 joins the demo)

  health   http://$addr/health      readiness  http://$addr/ready
  metrics  http://$addr/metrics     admin key  ${ADMIN_KEY:-(admin off)}
  redis    $REDIS_URL
  postgres $DATABASE_URL

Try the journey (in another terminal; README.md explains each step; the seat
map and hold need the token ACTIVE: poll it until the room opens and admits it):
  B=http://$addr
  TOKEN=\$(curl -s -X POST \$B/users | sed -E 's/.*"access_token":"([^"]+)".*/\1/'); AUTH="Authorization: Bearer \$TOKEN"
  curl -s -X POST \$B/balance/charge -H "\$AUTH" -d '{"amount": 100000}'
  QT=\$(curl -s -X POST \$B/queue/tokens -H "\$AUTH" -d '{"concert_id": 1}' | sed -E 's/.*"token":"([^"]+)".*/\1/'); PASS="X-Queue-Token: \$QT"
  curl -s \$B/queue/tokens/\$QT -H "\$AUTH"
  curl -s "\$B/schedules/1/seats?status=AVAILABLE" -H "\$AUTH" -H "\$PASS"
  RID=\$(curl -s -X POST \$B/reservations -H "\$AUTH" -H "\$PASS" -d '{"schedule_id": 1, "seat_no": 7}' | sed -E 's/.*"id":([0-9]+).*/\1/')
  curl -s -X POST \$B/payments -H "\$AUTH" -H "\$PASS" -H "Idempotency-Key: pay-\$RID" -d "{\\"reservation_id\\": \$RID}"
  curl -s \$B/reservations/\$RID -H "\$AUTH"

The demo concert's waiting room opens a minute after the seed: join now to
see the pre-queue (position null, the countdown), then the shuffle and the
admission. Steer it as its operator:
  R=\$B/admin/concerts/1/waiting-room; A="X-Admin-Key: ${ADMIN_KEY:-dev-admin-key}"
  curl -s \$R -H "\$A"
  curl -s -X PATCH \$R -H "\$A" -d '{"opens_at": null}'      # open now
  curl -s -X PATCH \$R -H "\$A" -d '{"paused": true}'        # pause (and false to resume)
  curl -s -X PATCH \$R -H "\$A" -d '{"admission_rate": 5}'   # admit 5 a second
  curl -s -X PATCH \$R -H "\$A" -d '{"message": "Doors at 7"}'

TXT
