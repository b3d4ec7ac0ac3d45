// Admitted fans hold random seats and cancel what they got (goose `holdrandom`);
// with -e HOT=1 everyone wants the same 50 seats (goose `holdhot`).
//   k6 run -e BO_HOST=… [-e HOT=1] loadtest/k6/hold.js
import http from 'k6/http';
import { HOST, target, activeFan, json } from './lib.js';

export const options = { vus: 50, duration: '30s', summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'] };
export function setup() { return target(); }

let fan = null;
export default function (t) {
  if (!fan) fan = activeFan(t);
  const seats = __ENV.HOT ? Math.min(50, t.seats) : t.seats;
  const seat_no = 1 + Math.floor(Math.random() * seats);
  const h = json(fan.auth, fan.token);
  const r = http.post(`${HOST}/reservations`, JSON.stringify({ schedule_id: t.schedule, seat_no }),
    { ...h, tags: { name: 'hold' }, responseCallback: http.expectedStatuses(201, 409) });
  if (r.status === 201) {
    http.del(`${HOST}/reservations/${r.json('id')}`, null, { ...json(fan.auth), tags: { name: 'cancel' } });
  }
}
