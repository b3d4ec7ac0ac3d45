// The whole spike, one new fan per iteration (goose `journey`): create user,
// charge, join, poll until ACTIVE, browse, hold an available seat, pay; leave
// the queue if nothing is left.
//   k6 run -e BO_HOST=… -e BO_SEATS=20000 --vus 500 --iterations 100000 loadtest/k6/journey.js
// setup() opens the concert's room now, or with -e BO_OPENS_IN=SECONDS that
// many seconds after setup, so the first fans wait in the pre-queue (position
// null) and get their places drawn at the opening. The room's rate and cap
// stay as they are (-e BO_ROOM='{"admission_rate": 2000}' changes them).
// Once every seat is sold a join is 409 sold_out, an expected answer.
import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';
import { HOST, PRICE, target, join, waitActive, json, field, thresholds, summaryTrendStats } from './lib.js';

export const options = { vus: 200, iterations: 10000, thresholds, summaryTrendStats };
const paid = new Counter('journeys_paid');
const soldOut = new Counter('journeys_sold_out');
export function setup() {
  const opensIn = Number(__ENV.BO_OPENS_IN || 0);
  return target(opensIn > 0 ? { opens_at: new Date(Date.now() + opensIn * 1000).toISOString() } : {});
}

export default function (t) {
  const user = http.post(`${HOST}/users`, '{}', { ...json(), tags: { name: 'create user' } });
  check(user, { 'create user: 201 with a token': () => user.status === 201 && !!field(user, 'access_token') });
  if (user.status !== 201) return;
  const auth = `Bearer ${field(user, 'access_token')}`;
  const charge = http.post(`${HOST}/balance/charge`, JSON.stringify({ amount: PRICE * 2 }), { ...json(auth), tags: { name: 'charge' } });
  check(charge, { 'charge: 200': () => charge.status === 200 && field(charge, 'balance') === PRICE * 2 });
  const token = join(t, auth, { soldOutOk: true });
  if (!token) { soldOut.add(1); return; }
  const state = waitActive(auth, token, 0.25, 120);
  check(state, { 'queue: ACTIVE, or the room SOLD_OUT, within 120 s': (v) => v === 'ACTIVE' || v === 'SOLD_OUT' });
  if (state === 'SOLD_OUT') { soldOut.add(1); leave(auth, token); }
  if (state !== 'ACTIVE') return;
  const h = json(auth, token);
  const s = http.get(`${HOST}/concerts/${t.concert}/schedules`, { ...h, tags: { name: 'schedules' } });
  check(s, { 'schedules: 200': () => s.status === 200 });
  for (let attempt = 0; attempt < 3; attempt++) {
    const map = http.get(`${HOST}/schedules/${t.schedule}/seats?status=AVAILABLE`, { ...h, tags: { name: 'seat map (available)' } });
    check(map, { 'seat map (available): 200': () => map.status === 200 });
    const free = field(map, 'seats.#.seat_no') || [];
    if (free.length === 0) { soldOut.add(1); break; }
    const seat_no = free[Math.floor(Math.random() * free.length)];
    const held = http.post(`${HOST}/reservations`, JSON.stringify({ schedule_id: t.schedule, seat_no }),
      { ...h, tags: { name: 'hold' }, responseCallback: http.expectedStatuses(201, 409) });
    check(held, {
      'hold: 201, or 409 seat_unavailable': () =>
        held.status === 201 || (held.status === 409 && field(held, 'error.code') === 'seat_unavailable'),
    });
    if (held.status !== 201) continue;
    const id = field(held, 'id');
    const p = http.post(`${HOST}/payments`, JSON.stringify({ reservation_id: id }),
      { headers: { ...h.headers, 'idempotency-key': `k6-pay-${id}` }, tags: { name: 'pay' } });
    check(p, { 'pay: 201 PAID': () => p.status === 201 && field(p, 'status') === 'PAID' });
    if (p.status === 201) { paid.add(1); return; }
    break;
  }
  leave(auth, token);
}

function leave(auth, token) {
  const r = http.del(`${HOST}/queue/tokens/${token}`, null, { ...json(auth), tags: { name: 'leave' } });
  check(r, { 'leave: 204': () => r.status === 204 });
}
