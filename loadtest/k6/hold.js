// Admitted fans hold random seats and cancel what they got (goose `holdrandom`);
// with -e HOT=1 everyone wants the same 50 seats (goose `holdhot`).
//   k6 run -e BO_HOST=… [-e HOT=1] [-e BO_SEATS=50000] loadtest/k6/hold.js
// setup() opens the concert's room with fast admission and no cap; a 409
// seat_unavailable (someone else holds the seat) is an expected answer.
import http from 'k6/http';
import { check } from 'k6';
import { HOST, target, activeFan, json, field, thresholds, summaryTrendStats } from './lib.js';

export const options = { vus: 50, duration: '30s', thresholds, summaryTrendStats };
export function setup() { return target({ admission_rate: 100000, max_active: 0 }); }

let fan = null;
export default function (t) {
  if (!fan) fan = activeFan(t);
  const seats = __ENV.HOT ? Math.min(50, t.seats) : t.seats;
  const seat_no = 1 + Math.floor(Math.random() * seats);
  const h = json(fan.auth, fan.token);
  const r = http.post(`${HOST}/reservations`, JSON.stringify({ schedule_id: t.schedule, seat_no }),
    { ...h, tags: { name: 'hold' }, responseCallback: http.expectedStatuses(201, 409) });
  check(r, {
    'hold: 201 PENDING, or 409 seat_unavailable': () =>
      (r.status === 201 && field(r, 'status') === 'PENDING' && field(r, 'seat_no') === seat_no)
      || (r.status === 409 && field(r, 'error.code') === 'seat_unavailable'),
  });
  if (r.status === 201) {
    const c = http.del(`${HOST}/reservations/${field(r, 'id')}`, null, { ...json(fan.auth), tags: { name: 'cancel' } });
    check(c, { 'cancel: 204': () => c.status === 204 });
  }
}
