-- lib.lua: helpers shared by every script. The service sends each script as
-- one text: the generated prelude of codes (status letters and record field
-- names: WAITING, T_STATUS, R_STATE, ...; src/store/scripts/codes.rs), this
-- file, then the script's own file (src/store/scripts/mod.rs). So each script
-- stays one EVALSHA and one round trip.

-- Redis's clock, in milliseconds.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A rate limit, by GCRA (src/limits.rs): `key` holds the subject's
-- theoretical arrival time (TAT, ms): when its next request would be due at
-- the sustained rate of one per `interval` ms. Up to `burst` requests may come
-- at once. A request that fits moves the TAT on by one interval and returns 0;
-- one that does not changes nothing and returns the ms until it would fit. The
-- key lives only while the TAT is ahead of now (at most the burst window), so
-- a quiet subject costs no memory. An interval of 0 is off.
local function rate_wait(key, now, interval, burst)
  interval = tonumber(interval)
  if interval <= 0 then
    return 0
  end
  local tat = math.max(tonumber(redis.call('GET', key)) or 0, now)
  local wait = tat + interval - interval * tonumber(burst) - now
  if wait > 0 then
    return wait
  end
  redis.call('SET', key, tat + interval, 'PX', tat + interval - now)
  return 0
end

-- A number as Redis and the service spell it: an integer, never 1e+15.
local function digits(n)
  return string.format('%d', n)
end

-- ---------------------------------------------------------------- queue tokens
-- A token's record is one field of a bucket hash of REC_BUCKET consecutive
-- arrival numbers (small enough to stay a listpack), named by its arrival
-- number: 'status|user|check|joined ms|expires ms|admitted ms'. The token
-- carries its concert, its arrival number and a random check
-- (src/queue/token.rs); the service passes it as a reference 'tag#seq#check'
-- in KEYS (the tag routes it to the concert's slot). A bucket lives as long as
-- the longest-lived of its records needs (keep_for), so no record is lost
-- early; ended ones are tidied with their bucket.
local REC_BUCKET = 128

local function rec_key(tag, seq)
  return tag .. ':q:' .. digits(math.floor(seq / REC_BUCKET))
end

-- Keeps `key` for at least `ms` more; never shortens its life. One call when
-- the new life is the longer (a later write: the usual case), a second only
-- for a key with no TTL yet (new) or one that already lives longer.
local function keep_for(key, ms)
  if redis.call('PEXPIRE', key, ms, 'GT') == 0 then
    redis.call('PEXPIRE', key, ms, 'NX')
  end
end

local function rec_get(tag, seq)
  local key = rec_key(tag, seq)
  local v = redis.call('HGET', key, digits(seq))
  if not v then
    return nil
  end
  local status, user, check, joined, expires, admitted =
    string.match(v, '^(%a)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
  return {key = key, seq = seq, status = status, user = user, check = check,
    joined = tonumber(joined) or 0, expires = tonumber(expires) or 0,
    admitted = tonumber(admitted) or 0}
end

-- Writes record `r` back; it is kept for at least `ms`.
local function rec_put(r, ms)
  redis.call('HSET', r.key, digits(r.seq), table.concat({r.status, r.user, r.check, digits(r.joined),
    digits(r.expires), digits(r.admitted)}, '|'))
  keep_for(r.key, ms)
end

-- A token reference: the concert tag, the arrival number and the check.
local function token_ref(ref)
  local tag, seq, check = string.match(ref, '^(.+)#(%d+)#(%d+)$')
  return tag, tonumber(seq), check
end

-- What the service calls a token: 'seq#check' (it spells the UUID).
local function token_name(r)
  return digits(r.seq) .. '#' .. r.check
end

-- The record a client's reference names if it is `user`'s, else nil.
local function rec_of(ref, user)
  local tag, seq, check = token_ref(ref)
  if not tag then
    return nil
  end
  local r = rec_get(tag, seq)
  if not r or r.check ~= check or r.user ~= user then
    return nil
  end
  r.tag = tag
  return r
end

-- The user -> live token index: buckets by the last five digits of the user
-- id, field user -> arrival number.
local function user_key(tag, user)
  return tag .. ':u:' .. string.sub(user, -5)
end

-- Drops the user's index entry if it still names arrival number `seq`.
local function user_forget(tag, user, seq)
  local key = user_key(tag, user)
  if redis.call('HGET', key, user) == digits(seq) then
    redis.call('HDEL', key, user)
  end
end

-- The queue pass, in API.md's order: unknown or another user's, then expired or
-- processed, then still waiting. The caller has checked the token's concert.
-- Returns 'ok' | 'invalid' | 'expired' | 'waiting'.
local function gate(ref, user, now)
  local r = rec_of(ref, user)
  if not r then
    return 'invalid'
  end
  if r.status == WAITING then
    return 'waiting'
  end
  if r.status == ACTIVE and r.expires > now then
    return 'ok'
  end
  return 'expired'
end

-- The tokens placed by arrival: bit `seq` of the bitmap `w` is set while that
-- token waits there. `w .. ':c'` counts them per block of WBLOCK arrival
-- numbers and per group of WGROUP blocks, unsigned 32-bit counts written with
-- BITFIELD and read with GETRANGE: group g's count at index g * (WGROUP + 1),
-- then its blocks' counts (not hash fields: a hash of a few hundred stays a
-- listpack, searched in order). `w .. ':n'` counts them in all (field 'all')
-- and keeps the lowest arrival number that may still wait ('head'), and the
-- idle sweep's epoch length ('epoch') and last epoch swept ('swept'). One bit
-- a token, and its place is the counts of the groups ahead (one per 1 048 576
-- arrivals), at most WGROUP - 1 block counts and one BITCOUNT of at most
-- WBLOCK bits.
local WBLOCK = 65536
local WGROUP = 16

-- The BITFIELD offsets of block `block`'s group count and its own count.
local function w_slots(block)
  local base = math.floor(block / WGROUP) * (WGROUP + 1)
  local group, own = '#' .. digits(base), '#' .. digits(base + 1 + block % WGROUP)
  return group, own
end

-- Places `seq`; returns how many are placed by arrival now.
local function w_add(w, seq)
  redis.call('SETBIT', w, seq, 1)
  local group, block = w_slots(math.floor(seq / WBLOCK))
  redis.call('BITFIELD', w .. ':c', 'INCRBY', 'u32', group, 1, 'INCRBY', 'u32', block, 1)
  return redis.call('HINCRBY', w .. ':n', 'all', 1)
end

-- Takes `seq` out; false when it was not there.
local function w_del(w, seq)
  if redis.call('SETBIT', w, seq, 0) == 0 then
    return false
  end
  local group, block = w_slots(math.floor(seq / WBLOCK))
  redis.call('BITFIELD', w .. ':c', 'OVERFLOW', 'SAT',
    'INCRBY', 'u32', group, -1, 'INCRBY', 'u32', block, -1)
  redis.call('HINCRBY', w .. ':n', 'all', -1)
  return true
end

local function w_has(w, seq)
  return redis.call('GETBIT', w, seq) == 1
end

local function w_count(w)
  return tonumber(redis.call('HGET', w .. ':n', 'all')) or 0
end

-- The u32 at index `i` of a BITFIELD string `s` (big-endian; 0 past its end).
local function u32_at(s, i)
  local a, b, c, d = string.byte(s, i * 4 + 1, i * 4 + 4)
  return (((a or 0) * 256 + (b or 0)) * 256 + (c or 0)) * 256 + (d or 0)
end

-- Tokens placed by arrival at arrival numbers up to `seq`, inclusive: the
-- whole groups ahead, the whole blocks ahead in its group, then its block's
-- bits up to `seq`. The counts come in one GETRANGE, decoded here: building
-- a BITFIELD_RO GET per count cost Redis ~4 × as much (the arguments).
local function w_upto(w, seq)
  local block = math.floor(seq / WBLOCK)
  local n = 0
  if block > 0 then
    local group = math.floor(block / WGROUP)
    local base = group * (WGROUP + 1)
    local last = base + block % WGROUP
    local counts = redis.call('GETRANGE', w .. ':c', 0, last * 4 + 3)
    for g = 0, group - 1 do
      n = n + u32_at(counts, g * (WGROUP + 1))
    end
    for i = base + 1, last do
      n = n + u32_at(counts, i)
    end
  end
  return n + redis.call('BITCOUNT', w, block * WBLOCK, seq, 'BIT')
end

-- Up to `n` tokens from the head, in order, with arrival numbers below
-- `below` (nil: any); they leave the bitmap.
local function w_pop(w, n, below, out)
  local head = tonumber(redis.call('HGET', w .. ':n', 'head')) or 0
  local moved = false
  local taken = 0
  while taken < n do
    local pos = redis.call('BITPOS', w, 1, head, -1, 'BIT')
    if pos < 0 or (below and pos >= below) then
      break
    end
    w_del(w, pos)
    out[#out + 1] = pos
    taken = taken + 1
    head = pos + 1
    moved = true
  end
  if moved then
    redis.call('HSET', w .. ':n', 'head', digits(head))
  end
  return taken
end

-- Polls: a WAITING token's poll (or join) sets its bit in the bitmap of the
-- current epoch, a quarter of the room's idle window long. A token with no bit
-- in the last POLL_EPOCHS epochs and the current one has not polled for at
-- least the idle window. One bit a poll instead of a sorted-set entry a token.
local POLL_EPOCHS = 4

local function poll_epoch(idle)
  return math.max(1, math.ceil(idle / POLL_EPOCHS))
end

local function poll_key(tag, e, k)
  return tag .. ':pe:' .. digits(e) .. ':' .. digits(k)
end

-- Marks a poll of token `seq`; true when it is the token's first mark of the
-- epoch. A record is kept for waiting_ttl from its first mark of an epoch,
-- which covers every later poll of the same epoch: the others, most polls
-- when fans poll more often than once an epoch, extend nothing (two or three
-- Redis calls fewer).
local function mark_poll(tag, idle, seq, now)
  local e = poll_epoch(idle)
  local key = poll_key(tag, e, math.floor(now / e))
  if redis.call('SETBIT', key, seq, 1) == 1 then
    return false
  end
  redis.call('PEXPIRE', key, (POLL_EPOCHS + 3) * e)
  return true
end

-- How long a WAITING token's record (and its user's index entry) is kept
-- from a first mark of an epoch: the idle window, one epoch, and the
-- retention of an ended record (`retention` ms).
local function waiting_ttl(idle, retention)
  return idle + poll_epoch(idle) + tonumber(retention)
end

-- The hold of seat `idx` of schedule `sched`, the schedule's HELD index and
-- bitmap, and a reservation record, spelled as src/store/keys.rs spells them
-- (same concert tag, same slot).
local function hold_key(tag, sched, idx)
  return tag .. ':s:' .. sched .. ':h:' .. idx
end
local function held_key(tag, sched)
  return tag .. ':s:' .. sched .. ':held'
end
local function held_bits_key(tag, sched)
  return tag .. ':s:' .. sched .. ':heldbits'
end
local function reservation_key(tag, rid)
  return tag .. ':r:' .. rid
end
local function user_holds_key(tag, user)
  return tag .. ':uh:' .. user
end
local function sold_key(tag, sched)
  return tag .. ':s:' .. sched .. ':sold'
end
-- A closed pre-queue, waiting its turn at arrival number `base` (see open_if_due).
local function segment_key(tag, base)
  return tag .. ':pq:' .. base
end

-- Whether a payment of the reservation whose record field R_PAYING is `pay` is in
-- flight (pay_begin.lua notes it; pay_abort.lua and pay_finish.lua clear it).
local function paying(pay, now)
  return pay and tonumber(pay) > now
end

-- Takes seat `idx` out of the HELD index and bitmap.
local function unmark_held(held, held_bits, idx)
  redis.call('ZREM', held, idx)
  redis.call('SETBIT', held_bits, idx, 0)
end

-- Holds lapse by themselves (their keys expire); this tidies the HELD index
-- and bitmap after them, at most `limit` per call (a sweep runs with every
-- hold and seat map, so it keeps pace). Returns how many it tidied.
local function tidy_lapsed(held, held_bits, now, limit)
  local lapsed = redis.call('ZRANGEBYSCORE', held, '-inf', '(' .. now, 'LIMIT', 0, limit)
  for _, idx in ipairs(lapsed) do
    unmark_held(held, held_bits, idx)
  end
  return #lapsed
end

-- Frees the seat of reservation `rid` if that reservation still holds it (a
-- lapsed hold may already have been taken by someone else: left alone).
-- Returns 1 when it freed the seat, else 0.
local function release_seat(tag, sched, idx, rid)
  local hold = hold_key(tag, sched, idx)
  if redis.call('GET', hold) == rid then
    redis.call('DEL', hold)
    unmark_held(held_key(tag, sched), held_bits_key(tag, sched), idx)
    return 1
  end
  return 0
end

-- ---------------------------------------------------------------- waiting rooms

-- A concert's room, whole (its hash: the operator's settings, mirrored from
-- Postgres, and what the admission tick counted), or nil when Redis has none
-- (a flush or a restart): the caller then answers 'noroom' and the service
-- restores it from Postgres before trying again. For the tick and the
-- operator's reads; the hot scripts read room_hot.
local function room_get(key)
  local r = redis.call('HMGET', key, RM_VERSION, RM_RATE, RM_CAP, RM_TTL, RM_IDLE, RM_HOLD,
    RM_HOLDS, RM_OPENS, RM_PAUSED, RM_MSG, RM_TOTAL, RM_LEFT, RM_SOLD, RM_SEGS, RM_SCHED,
    RM_NSCHED, RM_PREQUEUE)
  if not r[1] then
    return nil
  end
  return {
    key = key, v = tonumber(r[1]), rate = tonumber(r[2]), cap = tonumber(r[3]),
    ttl = tonumber(r[4]), idle = tonumber(r[5]), hold = tonumber(r[6]), holds = tonumber(r[7]),
    opens = tonumber(r[8]) or 0, paused = r[9] == '1', msg = r[10] or '',
    total = tonumber(r[11]) or 0, left = tonumber(r[12]) or -1, sold = tonumber(r[13]) or -1,
    segs = r[14] or '', sched = r[15] or '', n = tonumber(r[16]) or 0, pq = r[17] == '1',
  }
end

-- The room's state, checked in API.md's order. SOLD_OUT needs a count (the
-- admission tick's) that found every seat of every schedule sold.
local function room_state(room, now)
  if room.total > 0 and room.sold >= room.total then
    return ROOM_SOLD_OUT
  end
  if room.paused then
    return ROOM_PAUSED
  end
  if room.opens > now then
    return ROOM_SCHEDULED
  end
  return ROOM_OPEN
end

-- What every token answer says of the room, as one string kept in the hash
-- (RM_VIEW): 'state|opens ms (0 = none)|seats left (-1 = not counted, or no
-- schedule)|rate|cap|active ttl ms|message'. It changes only when the room is
-- written or its seats counted, so those render it, and a join or a poll
-- reads it whole instead of rebuilding it (most of a poll's cost, else).
local function render_view(room, now)
  local left = room.left
  if room.total == 0 then
    left = -1
  end
  -- Numbers as integers: past 1e14 (opens_at after the year 5138, in ms)
  -- Lua would write `2.2573710039044e+14`, which the service cannot read.
  local view = table.concat({room_state(room, now), string.format('%d', room.opens),
    string.format('%d', left), string.format('%d', room.rate), string.format('%d', room.cap),
    string.format('%d', room.ttl), room.msg}, '|')
  room.view = view
  redis.call('HSET', room.key, RM_VIEW, view)
  return view
end

-- What a join, a poll or a leave needs of the room, in one short read (nil
-- when Redis has no room).
local function room_hot(key)
  local r = redis.call('HMGET', key, RM_VIEW, RM_OPENS, RM_PREQUEUE, RM_SEGS, RM_IDLE)
  if not r[1] then
    return nil
  end
  return {key = key, view = r[1], opens = tonumber(r[2]) or 0, pq = r[3] == '1',
    segs = r[4] or '', idle = tonumber(r[5])}
end

-- The view at `now`: a room rendered SCHEDULED is OPEN once opens_at has
-- passed (a pause or a sell-out would have been rendered instead).
local function view_now(room, now)
  local view = room.view
  if room.opens <= now and string.sub(view, 1, #ROOM_SCHEDULED + 1) == ROOM_SCHEDULED .. '|' then
    return ROOM_OPEN .. string.sub(view, #ROOM_SCHEDULED + 1)
  end
  return view
end

local function view_state(view)
  return string.match(view, '^[^|]*')
end

-- The arrival numbers of the closed pre-queues still waiting, in order.
local function segments(room)
  local out = {}
  for base in string.gmatch(room.segs, '%d+') do
    out[#out + 1] = tonumber(base)
  end
  return out
end

local function set_segments(room, list)
  room.segs = table.concat(list, ',')
  redis.call('HSET', room.key, RM_SEGS, room.segs)
end

-- At opens_at the pre-queue closes, exactly once: it becomes a segment of the
-- queue placed at a fresh arrival number `base`, so after every token placed
-- before and ahead of every later join, and ordered inside by the random
-- scores its tokens drew when they joined: a uniform shuffle, and arriving
-- early in it gives nothing. O(1) whatever its size: one RENAME (a second
-- script finds no pre-queue left to close).
local function open_if_due(tag, room, prequeue, arrivals, now)
  if room.opens > now or not room.pq then
    return
  end
  room.pq = false
  redis.call('HDEL', room.key, RM_PREQUEUE)
  if redis.call('EXISTS', prequeue) == 0 then
    return
  end
  local base = redis.call('INCR', arrivals)
  redis.call('RENAME', prequeue, segment_key(tag, base))
  local list = segments(room)
  list[#list + 1] = base
  set_segments(room, list)
end

-- A token joins the open pre-queue with its random score (the room notes that
-- it has one, so that scripts need not look for it).
local function enter_prequeue(room, prequeue, token, score)
  redis.call('ZADD', prequeue, score, token)
  if not room.pq then
    room.pq = true
    redis.call('HSET', room.key, RM_PREQUEUE, 1)
  end
end

-- The 1-based place of a WAITING token (arrival number `seq`), and where it is:
-- 'arrival' (placed by arrival), 'closed' (in a closed pre-queue), 'prequeue'
-- (in the open pre-queue: no place yet, nil), or nil, nil when it is in none.
-- The pre-queues are sorted sets of arrival numbers.
local function place(tag, room, w, prequeue, seq)
  local list = segments(room)
  if w_has(w, seq) then
    local ahead = w_upto(w, seq) - 1
    for _, base in ipairs(list) do
      if base < seq then
        ahead = ahead + redis.call('ZCARD', segment_key(tag, base))
      end
    end
    return ahead + 1, 'arrival'
  end
  for i, base in ipairs(list) do
    local rank = redis.call('ZRANK', segment_key(tag, base), digits(seq))
    if rank then
      local ahead = rank + w_upto(w, base)
      for j = 1, i - 1 do
        ahead = ahead + redis.call('ZCARD', segment_key(tag, list[j]))
      end
      return ahead + 1, 'closed'
    end
  end
  if room.pq and redis.call('ZSCORE', prequeue, digits(seq)) then
    return nil, 'prequeue'
  end
  return nil, nil
end

-- Tokens placed so far (by arrival and in closed pre-queues): all of them come
-- before the open pre-queue. `by_arrival`: the count placed by arrival, when
-- the caller has it (w_add's answer).
local function placed_count(tag, room, w, by_arrival)
  local n = by_arrival or w_count(w)
  for _, base in ipairs(segments(room)) do
    n = n + redis.call('ZCARD', segment_key(tag, base))
  end
  return n
end

-- Where a token of the open pre-queue can expect to land: behind everyone
-- placed, in the middle of the pre-queue.
local function expected_place(tag, room, w, prequeue)
  return placed_count(tag, room, w) + math.floor((redis.call('ZCARD', prequeue) + 1) / 2)
end

-- Takes a WAITING token out of every set that orders the queue.
local function unqueue(tag, room, w, prequeue, seq)
  if w_del(w, seq) then
    return
  end
  redis.call('ZREM', prequeue, digits(seq))
  if room then
    for _, base in ipairs(segments(room)) do
      redis.call('ZREM', segment_key(tag, base), digits(seq))
    end
  end
end

-- Up to `n` arrival numbers from the head of the queue, in order: tokens placed
-- by arrival before a closed pre-queue's base, then that pre-queue, and so on.
local function pop_head(tag, room, w, n)
  local out = {}
  local list = segments(room)
  local changed = false
  while #out < n do
    local base = list[1]
    if not base then
      w_pop(w, n - #out, nil, out)
      break
    end
    w_pop(w, n - #out, base, out)
    if #out < n then
      local key = segment_key(tag, base)
      local got = redis.call('ZPOPMIN', key, n - #out)
      for i = 1, #got, 2 do
        out[#out + 1] = tonumber(got[i])
      end
      if redis.call('EXISTS', key) == 0 then
        table.remove(list, 1)
        changed = true
      end
    end
  end
  -- Closed pre-queues emptied by leaves and idle drops go as well.
  while list[1] and redis.call('EXISTS', segment_key(tag, list[1])) == 0 do
    table.remove(list, 1)
    changed = true
  end
  if changed then
    set_segments(room, list)
  end
  return out
end

-- Counts the room's seats over all its schedules (tidying lapsed holds first):
-- returns seats neither sold nor held, seats sold, holds tidied. Bitmaps only:
-- a BITOP and two BITCOUNTs per schedule, whatever the seat count.
local function count_seats(tag, room, scratch, now)
  local taken, sold, lapsed = 0, 0, 0
  for sched in string.gmatch(room.sched, '(%d+):%d+') do
    local held, bits = held_key(tag, sched), held_bits_key(tag, sched)
    lapsed = lapsed + tidy_lapsed(held, bits, now, 1000)
    redis.call('BITOP', 'OR', scratch, sold_key(tag, sched), bits)
    taken = taken + redis.call('BITCOUNT', scratch)
    sold = sold + redis.call('BITCOUNT', sold_key(tag, sched))
  end
  redis.call('DEL', scratch)
  return math.max(0, room.total - taken), sold, lapsed
end

-- Counts and keeps the counts where every token answer reads them.
local function recount(tag, room, scratch, now)
  local left, sold, lapsed = count_seats(tag, room, scratch, now)
  room.left, room.sold = left, sold
  redis.call('HSET', room.key, RM_LEFT, left, RM_SOLD, sold)
  render_view(room, now)
  return lapsed
end
