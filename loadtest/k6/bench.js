// The HTTP side of `make bench` driven by k6 instead of wrk (compare.sh with
// BENCH_DRIVER=k6 or both): the requests of loadtest/wrk/*.lua, one per
// iteration, with no think time, no checks and the bodies discarded, as wrk
// does. BENCH picks the path:
//   hold  POST /reservations, a random prepared fan, a random seat (201, or 409 once taken)
//   map   GET /schedules/{id}/seats
//   join  POST /queue/tokens, a new fan each request
//   poll  GET /queue/tokens/{t} of a random WAITING fan
//
// Under compare.sh, BENCH_DATA is the folder `boxoffice-load prepare` filled
// (active.txt, waiting.txt, jwts.txt) and HOLD_SCHEDULE, MAP_SCHEDULE,
// WAITING_CONCERT, JOIN_OFFSET come from its env files, so k6 sends what wrk
// sends to the same kind of server. Without BENCH_DATA (the smoke), setup()
// makes a small set through the API: a concert whose room admits at once,
// 20 admitted fans, and a paused room with 50 WAITING fans.
//   k6 run -e BO_HOST=… -e BENCH=hold --vus 50 --duration 10s loadtest/k6/bench.js
import http from 'k6/http';
import exec from 'k6/execution';
import { SharedArray } from 'k6/data';
import { HOST, PRICE, admin, mint, newConcert, room, join, waitActive, summaryTrendStats } from './lib.js';

const BENCH = __ENV.BENCH || 'hold';
const DATA = __ENV.BENCH_DATA;
if (!['hold', 'map', 'join', 'poll'].includes(BENCH)) throw new Error(`BENCH=${BENCH}: hold, map, join or poll`);

// Prepared files, read once and shared by every VU (SharedArray).
function lines(name) {
  return new SharedArray(name, () => open(`${DATA}/${name}`).split('\n').filter((l) => l).map((l) => l.split('\t')));
}
const files = !DATA ? null
  : BENCH === 'hold' || BENCH === 'map' ? lines('active.txt')
  : BENCH === 'poll' ? lines('waiting.txt')
  : lines('jwts.txt');

export const options = {
  vus: 50,
  duration: '10s',
  discardResponseBodies: true,
  summaryTrendStats,
  // No checks here (wrk makes none): answers other than the expected ones count as failed.
  thresholds: {
    http_req_failed: ['rate<0.01'],
    http_req_duration: [`p(95)<${Number(__ENV.BO_P95_MS || 2000)}`],
    'http_reqs{status:409}': ['count>=0'], // always met: it only counts the seats already taken, as wrk's non-2xx
  },
};

export function setup() {
  if (DATA) {
    const n = (name) => Number(__ENV[name] || 0); // each path has only its own
    return { hold: n('HOLD_SCHEDULE'), holdSeats: 100000, map: n('MAP_SCHEDULE'), concert: n('WAITING_CONCERT'), offset: n('JOIN_OFFSET') };
  }
  const fans = [];
  if (BENCH === 'hold' || BENCH === 'map') {
    // One concert with both schedules, as `boxoffice-load prepare … booking` makes.
    const t = newConcert('Bench (k6)', 1000);
    const map = admin('POST', `/admin/concerts/${t.concert}/schedules`,
      { start_at: '2027-06-02T19:00:00Z', seat_count: 1000, price: PRICE }).id;
    room(t.concert, { admission_rate: 100000, max_active: 0, max_holds_per_user: 100, hold_ttl_secs: 3600 });
    for (let i = 0; i < 20; i++) {
      const auth = mint();
      const token = join(t, auth);
      if (token && waitActive(auth, token, 0.1, 60) === 'ACTIVE') fans.push([auth, token]);
    }
    if (fans.length < 20) throw new Error('setup: fans not admitted');
    return { hold: t.schedule, holdSeats: t.seats, map, fans };
  }
  const t = newConcert('Bench queue (k6)', 10);
  room(t.concert, { paused: true }); // admits nobody, as compare.sh's ADMISSION_RATE=1 MAX_ACTIVE=1 server nearly does
  for (let i = 0; i < 50 && BENCH === 'poll'; i++) {
    const auth = mint();
    fans.push([auth, join(t, auth)]);
  }
  return { concert: t.concert, fans, offset: 0 };
}

function pick(list) {
  return list[Math.floor(Math.random() * list.length)];
}

export default function (d) {
  if (BENCH === 'hold') {
    const [auth, token] = pick(files || d.fans);
    http.post(`${HOST}/reservations`,
      JSON.stringify({ schedule_id: d.hold, seat_no: 1 + Math.floor(Math.random() * d.holdSeats) }),
      { headers: { authorization: auth, 'x-queue-token': token, 'content-type': 'application/json' },
        tags: { name: 'hold' }, responseCallback: http.expectedStatuses(201, 409) });
  } else if (BENCH === 'map') {
    const [auth, token] = pick(files || d.fans);
    http.get(`${HOST}/schedules/${d.map}/seats`, { headers: { authorization: auth, 'x-queue-token': token }, tags: { name: 'seat map' } });
  } else if (BENCH === 'join') {
    const auth = files ? files[(d.offset + exec.scenario.iterationInTest) % files.length][0] : mint();
    http.post(`${HOST}/queue/tokens`, JSON.stringify({ concert_id: d.concert }),
      { headers: { authorization: auth, 'content-type': 'application/json' }, tags: { name: 'join' } });
  } else {
    const [auth, token] = pick(files || d.fans);
    http.get(`${HOST}/queue/tokens/${token}`, { headers: { authorization: auth }, tags: { name: 'poll' } });
  }
}
