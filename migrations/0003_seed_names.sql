-- The seed's own names. The entity model boxoffice was built from calls the
-- balance column `balance` (table balance) and a payment's amount `price`
-- (table payment), and gives each reservation_queue row a `queue_no`: its
-- place in the concert's arrival order. Outside tools (reports, BI, the seed's
-- own queries) read the database by those names. The API's JSON fields do not
-- change: a balance is still shown as "balance", a payment's as "amount".
--
-- Renames keep the CHECK constraints, the data and every index.
ALTER TABLE balance RENAME COLUMN amount TO balance;
ALTER TABLE payment RENAME COLUMN amount TO price;

-- Filled from the concert's arrival counter in Redis when the token joins (the
-- audit writer copies it), so it is the order the queue admits in. Null for
-- rows written before this migration.
ALTER TABLE reservation_queue ADD COLUMN queue_no bigint;
CREATE INDEX reservation_queue_concert_queue_no ON reservation_queue (concert_id, queue_no);

-- A correction to 0002's last comment, which a landed migration cannot take
-- (sqlx refuses a database whose applied migration changed): the SOLD
-- catch-up reads the sales confirmed in its last period plus a margin
-- (SOLD_CATCH_UP_SECS + 60 s: src/booking/recovery.rs), not "the last minute".
