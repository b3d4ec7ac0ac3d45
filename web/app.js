// boxoffice fan page: plain JavaScript against the public API (API.md), no
// build step. A fan is minted once (POST /users) and kept in localStorage, as
// is each concert's queue token and current hold, so a reload keeps the user,
// the place in line and the seat.
//
// Polling while WAITING: every max(2 s, estimate / 10), never less often than
// every 15 s (a fan at place 80 000 with a 20-minute estimate polls every 15 s;
// one near the front every 2 s). A 503, a dropped connection or a server
// restart keeps the token and tries again on the same schedule.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const store = window.localStorage;
  const POLL_MIN_MS = 2000;
  const POLL_MAX_MS = 15000;
  const ACTIVE_POLL_MS = 15000;
  const MAP_REFRESH_MS = 5000;
  const BIG_MAP_REFRESH_MS = 15000;
  const ALL_SEATS_UP_TO = 2000;
  const SECTION_SIZE = 1000;
  const won = new Intl.NumberFormat('ko-KR');

  const state = {
    concertId: null,
    concert: null,
    token: null,
    tokenView: null,
    firstPosition: null,
    schedules: [],
    scheduleId: null,
    seats: [],
    section: 0,
    chosen: null,
    hold: null,
    timers: {},
    balance: null,
  };

  // ---------------------------------------------------------------- the API

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, { body, headers = {}, auth = true } = {}) {
    const h = { ...headers };
    if (body !== undefined) h['Content-Type'] = 'application/json';
    if (auth) h.Authorization = 'Bearer ' + (await user()).access_token;
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: h,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
    } catch (e) {
      throw new ApiError(0, 'network', 'The box office cannot be reached.');
    }
    if (response.status === 204) return null;
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
    if (!response.ok) {
      const err = (data && data.error) || {};
      throw new ApiError(response.status, err.code || 'http_' + response.status, err.message || '');
    }
    return data;
  }

  // The fan: minted once, kept (a new one if the stored token has expired).
  let minting = null;
  async function user() {
    const kept = JSON.parse(store.getItem('bo.user') || 'null');
    if (kept && Date.parse(kept.expires_at) > Date.now() + 60_000) return kept;
    if (!minting) {
      minting = api('POST', '/users', { body: {}, auth: false })
        .then((u) => {
          store.setItem('bo.user', JSON.stringify(u));
          return u;
        })
        .finally(() => {
          minting = null;
        });
    }
    return minting;
  }

  // A random key (crypto.randomUUID needs a secure context; this does not).
  function randomKey() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  const tokenKey = (concert) => 'bo.token.' + concert;
  const holdKey = (concert) => 'bo.hold.' + concert;

  // ------------------------------------------------------------ what a fan reads

  const WORDS = {
    seat_unavailable: 'Someone else just took that seat. Please pick another.',
    hold_limit_reached: 'You already hold as many seats as this sale allows. Pay for or release one first.',
    hold_expired: 'Your hold ran out before the payment, and the seat went back on sale.',
    insufficient_balance: 'Your balance does not cover this seat. Add demo funds, then pay.',
    queue_token_expired: 'Your turn to book has ended. Join the line again to get a new one.',
    queue_token_invalid: 'This page lost your place in line. Join the line again.',
    queue_token_not_active: 'You are still in line: the seats open when it is your turn.',
    sold_out: 'This concert is sold out.',
    already_paid: 'This seat is already paid for.',
    already_confirmed: 'This seat is paid for: it is yours and cannot be released.',
    payment_in_progress: 'Your payment is still going through.',
    reservation_not_found: 'That reservation is not yours or no longer exists.',
    concert_not_found: 'There is no such concert.',
    rate_limited: 'Too many requests at once. Trying again shortly.',
    unavailable: 'The box office is very busy. Trying again shortly.',
    network: 'The box office cannot be reached. Trying again shortly.',
  };

  function say(err) {
    const box = $('alert');
    stop('alert');
    if (!err) {
      box.hidden = true;
      box.textContent = '';
      return;
    }
    const code = err.code || '';
    box.textContent = WORDS[code] || err.message || 'Something went wrong. Please try again.';
    box.hidden = false;
    // Read, then out of the way.
    state.timers.alert = setTimeout(() => say(null), 10000);
  }

  function duration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const r = s % 60;
    if (h > 0) return `${h} h ${String(m).padStart(2, '0')} min`;
    if (m > 0) return `${m} min ${String(r).padStart(2, '0')} s`;
    return `${r} s`;
  }

  function clock(seconds) {
    const s = Math.max(0, Math.ceil(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const r = s % 60;
    const mm = String(m).padStart(2, '0');
    const ss = String(r).padStart(2, '0');
    return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
  }

  function show(section) {
    for (const id of ['concerts', 'room', 'booking']) $(id).hidden = !section.includes(id);
  }

  function stop(name) {
    clearTimeout(state.timers[name]);
    clearInterval(state.timers[name]);
    delete state.timers[name];
  }

  async function refreshMe() {
    try {
      const u = await user();
      const b = await api('GET', '/balance');
      state.balance = b.balance;
      $('me').textContent = `Fan #${u.id} · balance ${won.format(b.balance)} won`;
    } catch (e) {
      // The header can wait; the line cannot.
    }
  }

  // ------------------------------------------------------------------ concerts

  async function listConcerts() {
    show(['concerts']);
    try {
      const { items } = await api('GET', '/concerts', { auth: false });
      const list = $('concert-list');
      list.replaceChildren();
      for (const c of items) {
        const li = document.createElement('li');
        const a = document.createElement('a');
        a.href = '/?concert=' + encodeURIComponent(c.id);
        a.textContent = c.title;
        if (c.artist) {
          const span = document.createElement('span');
          span.className = 'artist';
          span.textContent = c.artist;
          a.append(span);
        }
        li.append(a);
        list.append(li);
      }
      $('concerts-empty').hidden = items.length > 0;
      say(null);
    } catch (e) {
      say(e);
      state.timers.list = setTimeout(listConcerts, POLL_MAX_MS);
    }
  }

  // ------------------------------------------------------------- the waiting room

  async function openRoom(concertId) {
    state.concertId = concertId;
    show(['room']);
    try {
      state.concert = await api('GET', '/concerts/' + concertId, { auth: false });
      $('room-title').textContent = state.concert.title;
      document.title = state.concert.title + ' · boxoffice';
    } catch (e) {
      if (e.code === 'concert_not_found') {
        say(e);
        return;
      }
      $('room-title').textContent = 'Concert ' + concertId;
    }
    state.token = store.getItem(tokenKey(concertId));
    if (state.token) {
      await poll();
    } else {
      await join();
    }
  }

  async function join() {
    try {
      const view = await api('POST', '/queue/tokens', { body: { concert_id: state.concertId } });
      store.setItem(tokenKey(state.concertId), view.token);
      state.token = view.token;
      state.firstPosition = null;
      say(null);
      render(view);
    } catch (e) {
      if (e.code === 'sold_out') {
        renderEnded('SOLD_OUT', WORDS.sold_out, false);
        return;
      }
      say(e);
      if (e.status >= 400 && e.status < 500 && e.status !== 429) return;
      schedulePoll(POLL_MIN_MS * 2, join);
    }
  }

  async function poll() {
    stop('poll');
    try {
      const view = await api('GET', '/queue/tokens/' + encodeURIComponent(state.token));
      $('poll-note').textContent = '';
      say(null);
      render(view);
    } catch (e) {
      if (e.code === 'queue_token_not_found') {
        // Not ours any more (another browser's fan, or the sale's data was
        // reset): a new place.
        store.removeItem(tokenKey(state.concertId));
        await join();
        return;
      }
      if (e.status === 401 && e.code === 'unauthorized') {
        store.removeItem('bo.user');
      }
      // A 503, a restart, a lost connection: keep the token, try again.
      $('poll-note').textContent = 'Reconnecting… your place is kept.';
      const wait = state.tokenView ? pollDelay(state.tokenView) : POLL_MIN_MS;
      schedulePoll(wait, poll);
    }
  }

  function schedulePoll(ms, what) {
    stop('poll');
    state.timers.poll = setTimeout(what, ms);
  }

  function pollDelay(view) {
    const est = (view.estimated_wait_seconds || 0) * 1000;
    return Math.min(POLL_MAX_MS, Math.max(POLL_MIN_MS, est / 10));
  }

  function setStatus(code, words) {
    const badge = $('status');
    badge.textContent = code;
    badge.className = 'badge ' + code;
    $('state-words').textContent = words;
  }

  function render(view) {
    state.tokenView = view;
    const msg = $('room-message');
    msg.hidden = !view.message;
    msg.textContent = view.message || '';
    $('seats-left').textContent = view.seats_left == null ? '–' : won.format(view.seats_left);
    if (view.status === 'WAITING') {
      renderWaiting(view);
      // Sold out: a slow poll still learns of new seats (a new performance).
      schedulePoll(view.room_state === 'SOLD_OUT' ? POLL_MAX_MS : pollDelay(view), poll);
    } else if (view.status === 'ACTIVE') {
      stop('countdown');
      setStatus('ACTIVE', 'It is your turn: pick a seat, hold it, pay.');
      show(['room', 'booking']);
      $('waiting').hidden = true;
      $('ended').hidden = true;
      enterBooking(view);
      schedulePoll(ACTIVE_POLL_MS, poll);
    } else if (view.status === 'PROCESSED') {
      setStatus('PROCESSED', 'Your booking is done. Enjoy the show.');
      show(['room', 'booking']);
      $('waiting').hidden = true;
      $('ended').hidden = true;
      stop('poll');
      stop('pass');
      stop('map');
      $('pass-left').textContent = '';
      // Only the receipt is left to show.
      $('booking-title').textContent = 'Your booking';
      for (const id of ['schedules', 'map-tools', 'seat-map']) $(id).hidden = true;
    } else {
      stop('poll');
      renderEnded(view.status, 'Your place in line has ended (you left, or the page was not open for a while).', true);
    }
  }

  const ROOM_WORDS = {
    OPEN: 'You are in line. Keep this page open: it moves by itself.',
    PAUSED: 'The sale is paused for a moment. Everyone keeps their place.',
    SCHEDULED: 'You are in the waiting room. When the sale opens, everyone here gets a random place in line, ahead of anyone who arrives later.',
    SOLD_OUT: 'Every seat is sold. Thank you for waiting.',
  };

  function renderWaiting(view) {
    $('waiting').hidden = false;
    $('ended').hidden = true;
    const room = view.room_state || 'OPEN';
    setStatus(room === 'OPEN' ? view.status : room, ROOM_WORDS[room] || '');
    const pos = view.position;
    const soldOut = room === 'SOLD_OUT';
    $('position').textContent = pos == null ? '' : won.format(pos);
    // Sold out is the end: no place, no progress, nothing to leave.
    $('place-box').hidden = pos == null || soldOut;
    $('progress').hidden = soldOut;
    $('leave').hidden = soldOut;
    if (pos != null) {
      if (state.firstPosition == null || pos > state.firstPosition) state.firstPosition = pos;
      const done = state.firstPosition > 1 ? (state.firstPosition - pos) / (state.firstPosition - 1) : 1;
      setProgress(done);
    } else {
      setProgress(0);
    }
    $('estimate').textContent =
      room === 'SOLD_OUT' ? '–' : room === 'PAUSED' ? 'paused' : 'about ' + duration(view.estimated_wait_seconds);
    const opens = view.opens_at ? Date.parse(view.opens_at) : null;
    if (room === 'SCHEDULED' && opens) {
      $('countdown-box').hidden = false;
      const tick = () => {
        const left = (opens - Date.now()) / 1000;
        $('countdown').textContent = clock(left);
        if (left <= 0) {
          stop('countdown');
          schedulePoll(300, poll);
        }
      };
      stop('countdown');
      tick();
      state.timers.countdown = setInterval(tick, 1000);
    } else {
      stop('countdown');
      $('countdown-box').hidden = true;
    }
  }

  function setProgress(fraction) {
    const pct = Math.round(Math.max(0, Math.min(1, fraction)) * 100);
    $('progress-bar').style.width = pct + '%';
    $('progress').setAttribute('aria-valuenow', String(pct));
  }

  function renderEnded(status, words, canRejoin) {
    $('waiting').hidden = true;
    $('ended').hidden = !canRejoin;
    setStatus(status, words);
    show(['room']);
  }

  async function leave() {
    if (!state.token) return;
    try {
      await api('DELETE', '/queue/tokens/' + encodeURIComponent(state.token));
    } catch (e) {
      say(e);
      return;
    }
    stop('poll');
    store.removeItem(tokenKey(state.concertId));
    store.removeItem(holdKey(state.concertId));
    renderEnded('EXPIRED', 'You left the line.', true);
  }

  async function rejoin() {
    store.removeItem(tokenKey(state.concertId));
    store.removeItem(holdKey(state.concertId));
    clearHold();
    await join();
  }

  // ------------------------------------------------------------------ booking

  let booking = false;
  async function enterBooking(view) {
    const until = Date.parse(view.expires_at);
    const tickPass = () => {
      const left = (until - Date.now()) / 1000;
      $('pass-left').textContent = left > 0 ? `Your turn to book ends in ${clock(left)}.` : 'Your turn to book has ended.';
    };
    stop('pass');
    tickPass();
    state.timers.pass = setInterval(tickPass, 1000);
    if (booking) return;
    booking = true;
    await loadSchedules();
    const kept = store.getItem(holdKey(state.concertId));
    if (kept) await restoreHold(Number(kept));
  }

  function passHeaders() {
    return { 'X-Queue-Token': state.token };
  }

  async function loadSchedules() {
    try {
      const { items } = await api('GET', `/concerts/${state.concertId}/schedules`, { headers: passHeaders() });
      state.schedules = items;
      const box = $('schedules');
      box.replaceChildren();
      for (const s of items) {
        const b = document.createElement('button');
        b.type = 'button';
        b.setAttribute('data-test', 'schedule');
        b.setAttribute('data-schedule-id', String(s.id));
        b.setAttribute('aria-pressed', 'false');
        const when = new Date(s.start_at);
        b.textContent = when.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
        const small = document.createElement('small');
        small.textContent = `${won.format(s.available_seats)} of ${won.format(s.seat_count)} seats available`;
        b.append(small);
        b.addEventListener('click', () => chooseSchedule(s.id));
        box.append(b);
      }
      if (items.length > 0) await chooseSchedule(state.scheduleId || items[0].id);
    } catch (e) {
      say(e);
      if (e.code && e.code.startsWith('queue_token')) return;
      setTimeout(loadSchedules, POLL_MIN_MS * 2);
    }
  }

  async function chooseSchedule(id) {
    if (state.scheduleId !== id) {
      state.scheduleId = id;
      state.section = 0;
      state.chosen = null;
      state.seats = [];
      $('seat-map').replaceChildren();
    }
    for (const b of $('schedules').children) {
      b.setAttribute('aria-pressed', String(Number(b.getAttribute('data-schedule-id')) === id));
    }
    await refreshMap();
  }

  async function refreshMap() {
    stop('map');
    if (!state.scheduleId) return;
    try {
      const data = await api('GET', `/schedules/${state.scheduleId}/seats`, { headers: passHeaders() });
      state.seats = data.seats;
      drawMap();
      showAvailable();
    } catch (e) {
      if (state.hold && state.hold.status === 'CONFIRMED') return;
      say(e);
      if (e.code && e.code.startsWith('queue_token')) return;
    }
    const every = state.seats.length > ALL_SEATS_UP_TO ? BIG_MAP_REFRESH_MS : MAP_REFRESH_MS;
    if (!state.hold || state.hold.status === 'PENDING') state.timers.map = setTimeout(refreshMap, every);
  }

  // The chosen performance's "n of m seats available", from the map just read.
  function showAvailable() {
    const free = state.seats.filter((x) => x.status === 'AVAILABLE').length;
    for (const b of $('schedules').children) {
      if (Number(b.getAttribute('data-schedule-id')) === state.scheduleId) {
        const small = b.querySelector('small');
        if (small) small.textContent = `${won.format(free)} of ${won.format(state.seats.length)} seats available`;
      }
    }
  }

  // Up to 2 000 seats: every seat a button. Past that, sections of 1 000, and
  // "Best available" picks at once.
  function drawMap() {
    const seats = state.seats;
    const sections = $('sections');
    let shown = seats;
    if (seats.length > ALL_SEATS_UP_TO) {
      const count = Math.ceil(seats.length / SECTION_SIZE);
      if (sections.children.length !== count) {
        sections.replaceChildren();
        for (let i = 0; i < count; i++) {
          const b = document.createElement('button');
          b.type = 'button';
          const from = seats[i * SECTION_SIZE].seat_no;
          const to = seats[Math.min(seats.length, (i + 1) * SECTION_SIZE) - 1].seat_no;
          b.textContent = `${from}–${to}`;
          b.addEventListener('click', () => {
            state.section = i;
            drawMap();
          });
          sections.append(b);
        }
      }
      sections.hidden = false;
      [...sections.children].forEach((b, i) => b.setAttribute('aria-pressed', String(i === state.section)));
      shown = seats.slice(state.section * SECTION_SIZE, (state.section + 1) * SECTION_SIZE);
    } else {
      sections.hidden = true;
    }
    const map = $('seat-map');
    const existing = map.children;
    // Update in place when the same seats are shown: no layout jump.
    const same = existing.length === shown.length &&
      shown.every((s, i) => existing[i].getAttribute('data-seat-no') === String(s.seat_no));
    if (!same) {
      const frag = document.createDocumentFragment();
      for (const s of shown) {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'seat';
        b.setAttribute('data-test', 'seat');
        b.setAttribute('data-seat-no', String(s.seat_no));
        b.textContent = String(s.seat_no);
        b.addEventListener('click', () => pick(Number(b.getAttribute('data-seat-no'))));
        frag.append(b);
      }
      map.replaceChildren(frag);
    }
    const bySeat = new Map(shown.map((s) => [s.seat_no, s]));
    for (const b of map.children) {
      const s = bySeat.get(Number(b.getAttribute('data-seat-no')));
      b.setAttribute('data-status', s.status);
      const mine = state.chosen === s.seat_no;
      b.setAttribute('aria-pressed', String(mine));
      b.disabled = s.status !== 'AVAILABLE' && !mine;
      b.setAttribute('aria-label', `Seat ${s.seat_no}, ${s.status.toLowerCase()}, ${won.format(s.price)} won`);
    }
    if (state.chosen != null && !state.hold) {
      const s = seats.find((x) => x.seat_no === state.chosen);
      if (!s || s.status !== 'AVAILABLE') {
        state.chosen = null;
        $('choice').textContent = 'That seat was just taken. Choose another.';
        $('hold').disabled = true;
      }
    }
  }

  function pick(seatNo) {
    if (state.hold && state.hold.status === 'PENDING') return;
    const s = state.seats.find((x) => x.seat_no === seatNo);
    if (!s || s.status !== 'AVAILABLE') return;
    state.chosen = seatNo;
    say(null);
    $('choice').textContent = `Seat ${seatNo} · ${won.format(s.price)} won`;
    $('hold').disabled = false;
    drawMap();
  }

  async function bestAvailable() {
    try {
      const data = await api('GET', `/schedules/${state.scheduleId}/seats?status=AVAILABLE`, { headers: passHeaders() });
      if (data.seats.length === 0) {
        $('choice').textContent = 'No seat is available in this performance right now.';
        return;
      }
      const best = data.seats[0];
      const index = state.seats.findIndex((x) => x.seat_no === best.seat_no);
      if (index >= 0 && state.seats.length > ALL_SEATS_UP_TO) state.section = Math.floor(index / SECTION_SIZE);
      if (index >= 0) state.seats[index].status = 'AVAILABLE';
      pick(best.seat_no);
    } catch (e) {
      say(e);
    }
  }

  async function hold() {
    if (state.chosen == null) return;
    $('hold').disabled = true;
    try {
      const r = await api('POST', '/reservations', {
        body: { schedule_id: state.scheduleId, seat_no: state.chosen },
        headers: passHeaders(),
      });
      store.setItem(holdKey(state.concertId), String(r.id));
      say(null);
      showHold(r);
      await refreshMap();
    } catch (e) {
      say(e);
      $('hold').disabled = false;
      if (e.code === 'seat_unavailable') {
        state.chosen = null;
        $('hold').disabled = true;
        await refreshMap();
      }
    }
  }

  async function restoreHold(id) {
    try {
      const r = await api('GET', '/reservations/' + id);
      if (r.status === 'CANCELED') {
        store.removeItem(holdKey(state.concertId));
        return;
      }
      state.chosen = r.seat_no;
      if (r.schedule_id !== state.scheduleId) await chooseSchedule(r.schedule_id);
      showHold(r);
    } catch (e) {
      store.removeItem(holdKey(state.concertId));
    }
  }

  function showHold(r) {
    state.hold = r;
    state.hold.payKey = state.hold.payKey || store.getItem('bo.paykey.' + r.id) || randomKey();
    store.setItem('bo.paykey.' + r.id, state.hold.payKey);
    $('held').hidden = false;
    $('hold').hidden = true;
    $('choice').textContent = `Seat ${r.seat_no} · ${won.format(r.price)} won`;
    const status = $('reservation-status');
    status.textContent = r.status;
    status.className = 'badge ' + r.status;
    const paid = r.status === 'CONFIRMED';
    $('pay-row').hidden = paid || r.status !== 'PENDING';
    $('paid-words').hidden = !paid;
    if (paid) {
      $('paid-words').textContent = `Paid. Seat ${r.seat_no} is yours: reservation #${r.id}.`;
      $('hold-countdown').textContent = '';
      stop('hold');
      stop('map');
      return;
    }
    const until = Date.parse(r.expires_at);
    const tick = () => {
      const left = (until - Date.now()) / 1000;
      if (left > 0) {
        $('hold-countdown').textContent = `held for you for ${clock(left)}`;
      } else {
        stop('hold');
        $('hold-countdown').textContent = '';
        status.textContent = 'CANCELED';
        status.className = 'badge CANCELED';
        $('pay-row').hidden = true;
        say({ code: 'hold_expired' });
        store.removeItem(holdKey(state.concertId));
        setTimeout(clearHold, 4000);
      }
    };
    stop('hold');
    tick();
    state.timers.hold = setInterval(tick, 1000);
  }

  function clearHold() {
    stop('hold');
    state.hold = null;
    state.chosen = null;
    $('held').hidden = true;
    $('hold').hidden = false;
    $('hold').disabled = true;
    $('choice').textContent = 'Choose a seat.';
    if (state.scheduleId) refreshMap();
  }

  async function charge() {
    const dearest = state.seats.reduce((m, s) => Math.max(m, s.price), 0) || 100000;
    $('charge').disabled = true;
    try {
      const b = await api('POST', '/balance/charge', {
        body: { amount: Math.min(dearest, 1000000000) },
        headers: { 'Idempotency-Key': randomKey() },
      });
      state.balance = b.balance;
      say(null);
      await refreshMe();
    } catch (e) {
      say(e);
    } finally {
      $('charge').disabled = false;
    }
  }

  async function pay() {
    if (!state.hold) return;
    $('pay').disabled = true;
    try {
      await api('POST', '/payments', {
        body: { reservation_id: state.hold.id },
        headers: { ...passHeaders(), 'Idempotency-Key': state.hold.payKey },
      });
      const r = await api('GET', '/reservations/' + state.hold.id);
      say(null);
      // Paid: the pass is used up (PROCESSED), so the map is not read again.
      showHold(r);
      await refreshMe();
    } catch (e) {
      say(e);
      if (e.code === 'hold_expired') {
        store.removeItem(holdKey(state.concertId));
        setTimeout(clearHold, 4000);
      }
    } finally {
      $('pay').disabled = false;
    }
  }

  async function release() {
    if (!state.hold) return;
    try {
      await api('DELETE', '/reservations/' + state.hold.id);
      store.removeItem(holdKey(state.concertId));
      say(null);
      clearHold();
    } catch (e) {
      say(e);
    }
  }

  // -------------------------------------------------------------------- start

  function start() {
    $('leave').addEventListener('click', leave);
    $('rejoin').addEventListener('click', rejoin);
    $('hold').addEventListener('click', hold);
    $('charge').addEventListener('click', charge);
    $('pay').addEventListener('click', pay);
    $('release').addEventListener('click', release);
    $('best').addEventListener('click', bestAvailable);
    refreshMe();
    const concert = Number(new URLSearchParams(window.location.search).get('concert'));
    if (Number.isInteger(concert) && concert > 0) {
      openRoom(concert);
    } else {
      listConcerts();
    }
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
