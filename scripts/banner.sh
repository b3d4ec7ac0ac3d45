#!/usr/bin/env bash
# Printed by `make run` just before the server starts: where it is and how to try it.
addr=${HTTP_ADDR:-127.0.0.1:8080}
cat <<TXT

boxoffice is starting on http://$addr
  health   http://$addr/health      readiness  http://$addr/ready
  metrics  http://$addr/metrics     admin key  ${ADMIN_KEY:-(admin off)}
  redis    $REDIS_URL
  postgres $DATABASE_URL

Try it (in another terminal):
  curl -s http://$addr/concerts
  TOKEN=\$(curl -s -X POST http://$addr/users | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  curl -s -X POST http://$addr/balance/charge -H "Authorization: Bearer \$TOKEN" -d '{"amount": 100000}'
  curl -s http://$addr/balance/history -H "Authorization: Bearer \$TOKEN"

TXT
