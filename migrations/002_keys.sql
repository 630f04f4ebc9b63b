-- API key leases, cooldowns and counters. Key ids only: secrets never reach the database.

-- A lease is valid only while the account lock it was taken under (account + token) exists,
-- so removing a stale account lock frees its key as well.
CREATE TABLE key_leases (
  key_id     TEXT PRIMARY KEY,
  account    TEXT NOT NULL,
  lock_token INTEGER NOT NULL,
  leased_at  TEXT NOT NULL
);
CREATE INDEX key_leases_account ON key_leases (account, lock_token);

-- A key rotated away from rests until `until_ms` (survives daemon restarts).
CREATE TABLE key_cooldowns (
  key_id   TEXT PRIMARY KEY,
  until_ms INTEGER NOT NULL,
  reason   TEXT NOT NULL
);

CREATE TABLE key_stats (
  key_id       TEXT PRIMARY KEY,
  nonce_errors INTEGER NOT NULL DEFAULT 0
);
