// The whole spike, one new fan per iteration (goose `journey`): create user,
// charge, join, poll until ACTIVE, browse, hold an available seat, pay.
//   k6 run -e BO_HOST=… -e BO_SEATS=20000 --vus 500 --iterations 100000 loadtest/k6/journey.js
import http from 'k6/http';
import { Counter } from 'k6/metrics';
import { HOST, PRICE, target, join, waitActive, json } from './lib.js';

export const options = { vus: 200, iterations: 10000, summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'] };
const paid = new Counter('journeys_paid');
const soldOut = new Counter('journeys_sold_out');
export function setup() { return target(); }

export default function (t) {
  const user = http.post(`${HOST}/users`, '{}', { ...json(), tags: { name: 'create user' } });
  if (user.status !== 201) return;
  const auth = `Bearer ${user.json('access_token')}`;
  http.post(`${HOST}/balance/charge`, JSON.stringify({ amount: PRICE * 2 }), { ...json(auth), tags: { name: 'charge' } });
  const token = join(t, auth, { name: 'join' });
  if (!token || !waitActive(auth, token, 0.25)) return;
  const h = json(auth, token);
  http.get(`${HOST}/concerts/${t.concert}/schedules`, { ...h, tags: { name: 'schedules' } });
  for (let attempt = 0; attempt < 3; attempt++) {
    const map = http.get(`${HOST}/schedules/${t.schedule}/seats?status=AVAILABLE`, { ...h, tags: { name: 'seat map (available)' } });
    const free = map.json('seats') || [];
    if (free.length === 0) { soldOut.add(1); break; }
    const seat = free[Math.floor(Math.random() * free.length)];
    const held = http.post(`${HOST}/reservations`, JSON.stringify({ schedule_id: t.schedule, seat_no: seat.seat_no }),
      { ...h, tags: { name: 'hold' }, responseCallback: http.expectedStatuses(201, 409) });
    if (held.status !== 201) continue;
    const payHeaders = { headers: { ...h.headers, 'idempotency-key': `${held.json('id')}-${Date.now()}` } };
    const p = http.post(`${HOST}/payments`, JSON.stringify({ reservation_id: held.json('id') }), { ...payHeaders, tags: { name: 'pay' } });
    if (p.status === 201) { paid.add(1); return; }
    break;
  }
  http.del(`${HOST}/queue/tokens/${token}`, null, { ...json(auth), tags: { name: 'leave' } });
}
