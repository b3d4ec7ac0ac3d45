// Admitted fans read the schedules and the seat map (goose `browse`).
//   k6 run -e BO_HOST=… loadtest/k6/browse.js   (the server should admit quickly: ADMISSION_RATE, MAX_ACTIVE=0)
import http from 'k6/http';
import { HOST, target, activeFan, json } from './lib.js';

export const options = { vus: 50, duration: '30s', summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'] };
export function setup() { return target(); }

let fan = null;
export default function (t) {
  if (!fan) fan = activeFan(t);
  const h = json(fan.auth, fan.token);
  http.get(`${HOST}/concerts/${t.concert}/schedules`, { ...h, tags: { name: 'schedules' } });
  http.get(`${HOST}/schedules/${t.schedule}/seats`, { ...h, tags: { name: 'seat map' } });
}
