-- Waiting rooms: each concert's sale as its operator set it up. A row exists
-- only for a concert whose room was changed (PATCH /admin/concerts/{id}/
-- waiting-room); a missing row, or a NULL setting, means the environment's
-- default (ADMISSION_RATE, MAX_ACTIVE, ...), so a deployment's defaults still
-- reach every room nobody tuned.
--
-- The hot paths never read this table: the room is mirrored into one Redis hash
-- per concert ({c:<id>}:room) and rebuilt from here whenever Redis lost it.
-- `version` counts changes, so a stale copy never overwrites a newer one.
CREATE TABLE waiting_room (
    concert_id          bigint PRIMARY KEY REFERENCES concert (id),
    admission_rate      integer CHECK (admission_rate BETWEEN 1 AND 100000),
    max_active          integer CHECK (max_active BETWEEN 0 AND 1000000),
    active_ttl_secs     integer CHECK (active_ttl_secs BETWEEN 10 AND 86400),
    waiting_idle_secs   integer CHECK (waiting_idle_secs BETWEEN 10 AND 86400),
    hold_ttl_secs       integer CHECK (hold_ttl_secs BETWEEN 1 AND 86400),
    max_holds_per_user  integer CHECK (max_holds_per_user BETWEEN 1 AND 100),
    opens_at            timestamptz,
    paused              boolean NOT NULL DEFAULT false,
    message             text CHECK (char_length(message) BETWEEN 1 AND 500),
    version             bigint NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
