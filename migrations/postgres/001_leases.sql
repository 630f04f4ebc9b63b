-- Account leases and key leases shared by every daemon on this database.
-- Rows are never deleted: a released or expired lease keeps its token, so
-- fencing tokens only grow. Expiry is on the database clock.
CREATE TABLE IF NOT EXISTS botwarden_account_leases (
  account          text PRIMARY KEY,
  token            bigint NOT NULL DEFAULT 0,
  holder_id        text,            -- the daemon process holding it (null: free)
  holder_name      text,            -- daemon.name, for people
  host             text,
  broker_username  text NOT NULL DEFAULT '',
  instance_id      text,
  pid              integer,
  start_ticks      bigint,
  since            timestamptz,
  expires_at       timestamptz
);

CREATE TABLE IF NOT EXISTS botwarden_key_leases (
  key_id      text PRIMARY KEY,
  account     text,                 -- valid while that account's lease has lock_token and is live
  lock_token  bigint
);

CREATE TABLE IF NOT EXISTS botwarden_key_cooldowns (
  key_id  text PRIMARY KEY,
  until   timestamptz NOT NULL,
  reason  text NOT NULL
);
