-- The SOLD catch-up's watermark: the confirmation time of the last sale whose
-- seat the catch-up (or a full rebuild) marked SOLD in Redis. The catch-up
-- resumes from it (less a margin longer than any payment's transaction), so a
-- sale whose server died between its commit and its Redis step is marked
-- however long nobody was there to do it; "the last 90 s" was not enough.
--
-- One row. NULL: nothing marked yet, so the next catch-up reads every sale.
CREATE TABLE sold_watermark (
    only_row      boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    confirmed_at  timestamptz
);
INSERT INTO sold_watermark (only_row, confirmed_at) VALUES (true, NULL);
