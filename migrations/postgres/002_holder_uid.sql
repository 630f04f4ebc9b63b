-- The identity of the daemon holding a lease, one two machines cannot share
-- (a persisted random id mixed with the machine id): a daemon judges a live
-- lease against its local /proc only when it carries its own identity, never
-- by daemon.name and hostname, which two machines can share.
ALTER TABLE botwarden_account_leases ADD COLUMN IF NOT EXISTS holder_uid text;
