// Shared by the k6 scripts: settings, access tokens minted with the shared
// AUTH_SECRET (HS256), and the concert under load. Mirrors loadtest/src/fan.rs.
import http from 'k6/http';
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import { sleep } from 'k6';

export const HOST = __ENV.BO_HOST || 'http://127.0.0.1:8080';
const SECRET = __ENV.BO_AUTH_SECRET || 'boxoffice-dev-secret-do-not-use-in-production';
const ADMIN = __ENV.BO_ADMIN_KEY || 'dev-admin-key';
export const PRICE = Number(__ENV.BO_PRICE || 1000);

function b64url(s) {
  return encoding.b64encode(s, 'rawurl');
}

/** A bearer header value for a new platform user (id below 10^15). */
export function mint() {
  const id = Math.floor(Math.random() * 1e15) + 1;
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const claims = b64url(JSON.stringify({ sub: String(id), exp: Math.floor(Date.now() / 1000) + 6 * 3600 }));
  const sig = crypto.hmac('sha256', SECRET, `${header}.${claims}`, 'base64rawurl');
  return `Bearer ${header}.${claims}.${sig}`;
}

/** setup(): BO_CONCERT/BO_SCHEDULE, or a new concert with BO_SEATS seats. */
export function target() {
  const seats = Number(__ENV.BO_SEATS || 50000);
  if (__ENV.BO_CONCERT && __ENV.BO_SCHEDULE) {
    return { concert: Number(__ENV.BO_CONCERT), schedule: Number(__ENV.BO_SCHEDULE), seats };
  }
  const h = { headers: { 'x-admin-key': ADMIN, 'content-type': 'application/json' } };
  const concert = http.post(`${HOST}/admin/concerts`, JSON.stringify({ title: 'Load test (k6)' }), h).json('id');
  const schedule = http.post(`${HOST}/admin/concerts/${concert}/schedules`,
    JSON.stringify({ start_at: '2027-06-01T19:00:00Z', seat_count: seats, price: PRICE }), h).json('id');
  return { concert, schedule, seats };
}

export function json(auth, token) {
  const headers = { 'content-type': 'application/json' };
  if (auth) headers.authorization = auth;
  if (token) headers['x-queue-token'] = token;
  return { headers };
}

export function join(t, auth, tags) {
  const r = http.post(`${HOST}/queue/tokens`, JSON.stringify({ concert_id: t.concert }), { ...json(auth), tags });
  return r.status === 201 || r.status === 200 ? r.json('token') : null;
}

/** Polls until ACTIVE; false if the token ends otherwise. */
export function waitActive(auth, token, every) {
  for (let i = 0; i < 2400; i++) {
    const s = http.get(`${HOST}/queue/tokens/${token}`, { ...json(auth), tags: { name: 'poll' } }).json('status');
    if (s === 'ACTIVE') return true;
    if (s !== 'WAITING') return false;
    sleep(every);
  }
  return false;
}

/** A fan admitted to the concert: { auth, token }. */
export function activeFan(t) {
  const auth = mint();
  const token = join(t, auth, { name: 'join' });
  if (!token || !waitActive(auth, token, 0.1)) {
    throw new Error('this fan was not admitted (is the server admitting quickly? ADMISSION_RATE, MAX_ACTIVE=0)');
  }
  return { auth, token };
}
