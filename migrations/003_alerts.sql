-- Alerts waiting for delivery (at least once): written in the same transaction as their event.
CREATE TABLE alert_outbox (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  target      TEXT NOT NULL,
  fold_key    TEXT NOT NULL,          -- type + account: repeats inside minIntervalMs fold into one row
  event       TEXT NOT NULL,          -- the latest event of the fold (JSON, no secrets)
  count       INTEGER NOT NULL DEFAULT 1,
  created_ms  INTEGER NOT NULL,
  next_ms     INTEGER NOT NULL,
  attempts    INTEGER NOT NULL DEFAULT 0,
  last_error  TEXT
);
CREATE INDEX alert_outbox_due ON alert_outbox (target, next_ms);
CREATE INDEX alert_outbox_fold ON alert_outbox (target, fold_key);

-- When a (target, fold key) last got a message: the folding window starts there.
CREATE TABLE alert_last (
  target    TEXT NOT NULL,
  fold_key  TEXT NOT NULL,
  at_ms     INTEGER NOT NULL,
  PRIMARY KEY (target, fold_key)
);
