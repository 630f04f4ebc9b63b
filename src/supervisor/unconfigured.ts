/**
 * The settings a bot gets when its account is no longer in the config but its process still
 * lives (SPEC 14.3): enough to show it, stop it and hold its lock, nothing to start it with. The
 * stop uses the defaults (SIGTERM, 30 s grace), as its own settings left with the config.
 */
import type { Account } from '../config/schema.js';

export function unconfiguredAccount(id: string): Account {
  return {
    id,
    name: id,
    broker: '',
    brokerUsername: '',
    command: ['(not in the config)'],
    cwd: '/',
    env: {},
    duplicates: 'report',
    startMs: 1000,
    stop: { signal: 'SIGTERM', graceMs: 30_000 },
    // Never restarted: its exit ends it for good, and it disappears from /bots.
    restart: { policy: 'never', maxRestarts: 0, backoffMs: 1000, maxBackoffMs: 30_000, jitterMs: 0 },
    nonceErrors: { patterns: [], rotateAfter: 3, windowMs: 60_000, cooldownMs: 900_000 },
  };
}
