// Shared by the k6 scripts: settings, access tokens minted with the shared
// AUTH_SECRET (HS256), the concert under load and its waiting room, the checks
// every script makes and the thresholds a run must meet. Mirrors
// loadtest/src/fan.rs.
//
// Environment (-e NAME=value): BO_HOST, BO_AUTH_SECRET (the server's
// AUTH_SECRET), BO_ADMIN_KEY, BO_CONCERT + BO_SCHEDULE (else a new concert of
// BO_SEATS seats at BO_PRICE is made), BO_ROOM (JSON merged into the room
// settings a script asks for), BO_P95_MS (the p95 threshold, 2000 ms).
// The requests here whose answers are read ask for the body (responseType
// 'text'), as bench.js discards all the others.
import http from 'k6/http';
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import { check, sleep } from 'k6';

export const HOST = __ENV.BO_HOST || 'http://127.0.0.1:8080';
const SECRET = __ENV.BO_AUTH_SECRET || 'boxoffice-dev-secret-do-not-use-in-production';
const ADMIN = __ENV.BO_ADMIN_KEY || 'dev-admin-key';
export const PRICE = Number(__ENV.BO_PRICE || 1000);

/**
 * What a run must meet, or k6 exits 99: fewer than 1 % unexpected answers
 * (a script marks the answers it expects, such as a 409 for a seat someone
 * else holds), every check passing, and p95 under BO_P95_MS.
 */
export const thresholds = {
  http_req_failed: ['rate<0.01'],
  checks: ['rate==1'],
  http_req_duration: [`p(95)<${Number(__ENV.BO_P95_MS || 2000)}`],
};
export const summaryTrendStats = ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'];

function b64url(s) {
  return encoding.b64encode(s, 'rawurl');
}

/** A bearer header value for platform user `id` (a new random one below 10^15 by default). */
export function mint(id = Math.floor(Math.random() * 1e15) + 1) {
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const claims = b64url(JSON.stringify({ sub: String(id), exp: Math.floor(Date.now() / 1000) + 6 * 3600 }));
  const sig = crypto.hmac('sha256', SECRET, `${header}.${claims}`, 'base64rawurl');
  return `Bearer ${header}.${claims}.${sig}`;
}

/** An admin request that must succeed (setup only): its JSON answer. */
export function admin(method, path, body) {
  const r = http.request(method, `${HOST}${path}`, body === undefined ? null : JSON.stringify(body), {
    headers: { 'x-admin-key': ADMIN, 'content-type': 'application/json' },
    tags: { name: `admin ${method}` }, responseType: 'text',
  });
  if (r.status < 200 || r.status > 299) {
    throw new Error(`${method} ${path}: ${r.status} ${r.body} (BO_HOST, BO_ADMIN_KEY?)`);
  }
  return field(r);
}

/** A new concert with one schedule of `seats` seats: { concert, schedule, seats }. */
export function newConcert(title, seats, startAt = '2027-06-01T19:00:00Z') {
  const concert = admin('POST', '/admin/concerts', { title, artist: 'k6' }).id;
  const schedule = admin('POST', `/admin/concerts/${concert}/schedules`,
    { start_at: startAt, seat_count: seats, price: PRICE }).id;
  return { concert, schedule, seats };
}

/**
 * Sets a concert's waiting room (PATCH …/waiting-room): open now and not
 * paused, then `settings`, then BO_ROOM. Returns the room as the server has it.
 */
export function room(concert, settings = {}) {
  const extra = __ENV.BO_ROOM ? JSON.parse(__ENV.BO_ROOM) : {};
  return admin('PATCH', `/admin/concerts/${concert}/waiting-room`,
    { opens_at: null, paused: false, ...settings, ...extra });
}

/**
 * setup(): BO_CONCERT/BO_SCHEDULE, or a new concert with BO_SEATS seats;
 * either way its room is set as the scenario needs (see room()). The settings
 * stay after the run.
 */
export function target(settings = {}, defaultSeats = 50000) {
  const seats = Number(__ENV.BO_SEATS || defaultSeats);
  const t = __ENV.BO_CONCERT && __ENV.BO_SCHEDULE
    ? { concert: Number(__ENV.BO_CONCERT), schedule: Number(__ENV.BO_SCHEDULE), seats }
    : newConcert('Load test (k6)', seats);
  room(t.concert, settings);
  return t;
}

/** A field of a JSON answer (a gjson path), or undefined when the body is not JSON. */
export function field(r, path) {
  try { return path === undefined ? r.json() : r.json(path); } catch (e) { return undefined; }
}

export function json(auth, token) {
  const headers = { 'content-type': 'application/json' };
  if (auth) headers.authorization = auth;
  if (token) headers['x-queue-token'] = token;
  return { headers };
}

const LIVE = ['WAITING', 'ACTIVE'];

/**
 * Joins the concert's queue: the token, or null. A join answers 201 (new) or
 * 200 (the fan's live token), in the pre-queue too (position null while the
 * room is SCHEDULED); with `soldOutOk`, 409 sold_out is expected as well.
 */
export function join(t, auth, { soldOutOk = false, tags = { name: 'join' } } = {}) {
  const expected = soldOutOk ? http.expectedStatuses(200, 201, 409) : http.expectedStatuses(200, 201);
  const r = http.post(`${HOST}/queue/tokens`, JSON.stringify({ concert_id: t.concert }),
    { ...json(auth), tags, responseCallback: expected, responseType: 'text' });
  const live = (r.status === 201 || r.status === 200) && LIVE.includes(field(r, 'status')) && !!field(r, 'token');
  check(r, {
    'join: 201/200 with a live token (or 409 sold_out when expected)': () =>
      live || (soldOutOk && r.status === 409 && field(r, 'error.code') === 'sold_out'),
  });
  return live ? field(r, 'token') : null;
}

/** Reads a token: { status, room_state } (status null when the answer is not a 200). */
export function poll(auth, token) {
  const r = http.get(`${HOST}/queue/tokens/${token}`, { ...json(auth), tags: { name: 'poll' }, responseType: 'text' });
  const status = r.status === 200 ? field(r, 'status') : undefined;
  check(r, { 'poll: 200 with a status': () => !!status });
  return { status: status || null, room: status ? field(r, 'room_state') : null };
}

/**
 * Polls every `every` seconds until the token is ACTIVE or will not be: its
 * status then (ACTIVE, EXPIRED, PROCESSED), SOLD_OUT when the room sold out
 * (its WAITING tokens stay WAITING), or TIMEOUT after `limitSecs`.
 */
export function waitActive(auth, token, every, limitSecs = 300) {
  for (let waited = 0; waited <= limitSecs; waited += every) {
    const { status, room } = poll(auth, token);
    if (status !== 'WAITING') return status || 'ERROR';
    if (room === 'SOLD_OUT') return 'SOLD_OUT';
    sleep(every);
  }
  return 'TIMEOUT';
}

/** A fan admitted to the concert: { auth, token } (the room must admit quickly). */
export function activeFan(t) {
  const auth = mint();
  const token = join(t, auth);
  const admitted = !!token && waitActive(auth, token, 0.1, 60) === 'ACTIVE';
  check(admitted, { 'fan admitted within 60 s': (a) => a });
  if (!admitted) throw new Error(`fan not admitted to concert ${t.concert}`);
  return { auth, token };
}
