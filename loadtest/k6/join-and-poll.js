// New fans join the queue and poll their place (1 join : 4 polls), like the
// goose scenario `joinandpoll`.   k6 run -e BO_HOST=http://127.0.0.1:8080 loadtest/k6/join-and-poll.js
import http from 'k6/http';
import { HOST, mint, target, join, json } from './lib.js';

export const options = { vus: 50, duration: '30s', summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'] };
export function setup() { return target(); }

export default function (t) {
  const auth = mint();
  const token = join(t, auth, { name: 'join' });
  for (let i = 0; i < 4 && token; i++) {
    http.get(`${HOST}/queue/tokens/${token}`, { ...json(auth), tags: { name: 'poll' } });
  }
}
