-- Why a bot's last process ended (SPEC 16): exit, stopped (with the stop reason), killed-outside,
-- oom, spawn-failed. Rows written before this migration have none (null).
ALTER TABLE bots ADD COLUMN last_exit_cause TEXT;
ALTER TABLE bots ADD COLUMN last_exit_reason TEXT;
