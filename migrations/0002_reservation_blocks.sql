-- Reservation ids are taken in Redis (a hold never waits on Postgres), yet must
-- never be reused, confirmed or not, even if Redis loses its data. Each server
-- takes a *block* of ids for one concert from reservation_id_seq: block b holds
-- the ids b * 2^14 .. b * 2^14 + 2^14 - 1. The row below records which concert
-- a block belongs to, so a reservation id alone leads to its concert's keys in
-- Redis (GET/DELETE /reservations/{id}, POST /payments), and the sequence, being
-- Postgres's, survives any Redis loss. A server that stops wastes at most what is
-- left of its blocks; ids stay below 2^53 for 2^39 blocks.
CREATE TABLE reservation_block (
    block       bigint PRIMARY KEY,
    concert_id  bigint NOT NULL REFERENCES concert (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The periodic catch-up of SOLD seats in Redis reads the sales of the last
-- minute (src/booking/recovery.rs).
CREATE INDEX reservation_confirmed_at ON reservation (confirmed_at) WHERE status = 'CONFIRMED';
