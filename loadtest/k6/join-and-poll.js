// New fans join the queue and poll their place (1 join : 4 polls), like the
// goose scenario `joinandpoll`.   k6 run -e BO_HOST=http://127.0.0.1:8080 loadtest/k6/join-and-poll.js
// setup() opens the concert's room and leaves its rate and cap as they are;
// with -e BO_ROOM='{"paused": true}' nobody is admitted and every poll reads a
// WAITING place.
import { mint, target, join, poll, thresholds, summaryTrendStats } from './lib.js';

export const options = { vus: 50, duration: '30s', thresholds, summaryTrendStats };
export function setup() { return target({}, 100); }

export default function (t) {
  const auth = mint();
  const token = join(t, auth);
  for (let i = 0; i < 4 && token; i++) poll(auth, token);
}
