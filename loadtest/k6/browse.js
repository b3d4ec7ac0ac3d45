// Admitted fans read the schedules and the seat map (goose `browse`).
//   k6 run -e BO_HOST=… [-e BO_SEATS=50000] loadtest/k6/browse.js
// setup() opens the concert's room with fast admission and no cap
// (admission_rate 100000, max_active 0), so the server's defaults do not matter.
import http from 'k6/http';
import { check } from 'k6';
import { HOST, target, activeFan, json, field, thresholds, summaryTrendStats } from './lib.js';

export const options = { vus: 50, duration: '30s', thresholds, summaryTrendStats };
export function setup() { return target({ admission_rate: 100000, max_active: 0 }); }

let fan = null;
export default function (t) {
  if (!fan) fan = activeFan(t);
  const h = json(fan.auth, fan.token);
  const s = http.get(`${HOST}/concerts/${t.concert}/schedules`, { ...h, tags: { name: 'schedules' } });
  check(s, { 'schedules: 200 with the schedule': () => s.status === 200 && (field(s, 'items.#.id') || []).includes(t.schedule) });
  const m = http.get(`${HOST}/schedules/${t.schedule}/seats`, { ...h, tags: { name: 'seat map' } });
  check(m, { 'seat map: 200 with every seat': () => m.status === 200 && field(m, 'seats.#') === t.seats });
}
