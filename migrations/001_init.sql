-- botwarden schema v1: bot state, instance registry, account locks, events.

-- One row per account: the supervisor's persisted state (source of truth after a crash).
CREATE TABLE bots (
  account          TEXT PRIMARY KEY,
  state            TEXT NOT NULL CHECK (state IN ('stopped','starting','running','stopping','backoff','fatal')),
  instance_id      TEXT,
  restarts         INTEGER NOT NULL DEFAULT 0,
  key_id           TEXT,
  last_exit_code   INTEGER,
  last_exit_signal TEXT,
  last_exit_at     TEXT,
  last_exit_forced INTEGER,
  updated_at       TEXT NOT NULL
);

-- Every launch of a bot process.
CREATE TABLE instances (
  id           TEXT PRIMARY KEY,
  account      TEXT NOT NULL,
  daemon_id    TEXT NOT NULL,
  pid          INTEGER,
  start_ticks  INTEGER,           -- field 22 of /proc/<pid>/stat: tells a reused pid apart
  pgid         INTEGER,
  state        TEXT NOT NULL CHECK (state IN ('spawning','running','exited')),
  key_id       TEXT,
  log_path     TEXT,
  started_at   TEXT NOT NULL,
  ended_at     TEXT,
  exit_code    INTEGER,
  exit_signal  TEXT,
  force_killed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX instances_account ON instances (account, started_at);
CREATE INDEX instances_live ON instances (state) WHERE state <> 'exited';

-- The account lock: at most one row per account, taken before anything is spawned.
CREATE TABLE account_locks (
  account         TEXT PRIMARY KEY,
  holder          TEXT NOT NULL,   -- daemon id @ host
  instance_id     TEXT,
  pid             INTEGER,
  start_ticks     INTEGER,
  broker_username TEXT NOT NULL DEFAULT '',
  created_at      TEXT NOT NULL,
  token           INTEGER NOT NULL
);

-- Fencing counters: never deleted, so tokens only grow.
CREATE TABLE fencing (
  account TEXT PRIMARY KEY,
  token   INTEGER NOT NULL
);

CREATE TABLE events (
  id      INTEGER PRIMARY KEY AUTOINCREMENT,
  type    TEXT NOT NULL,
  account TEXT,
  at      TEXT NOT NULL,
  data    TEXT NOT NULL
);
CREATE INDEX events_at ON events (at);

-- Small facts about this data dir (health probes write here).
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
