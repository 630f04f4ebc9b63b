/** What the HTTP adapter is given: the services, never the other way round. */
import type { Logger } from 'pino';
import type { AlertService } from '../alerts/service.js';
import type { LeaseView } from '../db/pg-locks.js';
import type { Metrics } from '../metrics/metrics.js';
import type { EventStore } from '../events/store.js';
import type { KeyPool } from '../keys/pool.js';
import type { HealthService } from '../monitor/health.js';
import type { ClockOffset } from '../monitor/clock.js';
import type { Supervisor } from '../supervisor/supervisor.js';
import type { RoleToken } from '../config/schema.js';

/** This machine's clock against the exchanges' (SPEC 17). */
export interface ClockReadings {
  list(): { offsets: ClockOffset[]; sync: boolean | null };
}

export interface ServerDeps {
  supervisor: Supervisor;
  keys: KeyPool;
  events: EventStore;
  health: HealthService;
  token: string;
  listenHost: string;
  allowedHosts: readonly string[];
  logger: Logger;
  version: string;
  /** Re-reads and applies the config; throws BotwardenError INVALID_CONFIG and changes nothing when invalid. */
  reloadConfig: () => Promise<{ accounts: string[] }>;
  /** Every live account lease on the shared database (PostgreSQL mode; [] otherwise). Throws when the backend is down. */
  leases: () => LeaseView[];
  metrics: Metrics;
  alerts: AlertService;
  /** This machine's clock against the exchanges' (SPEC 17): GET /clock. */
  clock?: ClockReadings;
  /** SPEC 18: the named tokens of `auth.tokens` (asked on every request: a reload takes effect at once); `token` is always admin. */
  roleTokens?: () => readonly RoleToken[];
  /** SPEC 18: behind a reverse proxy, the client address is the last one in X-Forwarded-For. */
  trustProxy?: boolean;
  /** Monotonic ms for the brute-force window (the daemon's clock); performance.now() by default. */
  now?: () => number;
  /** Masks every secret the daemon holds (SPEC 15) in whatever leaves over HTTP; none by default. */
  mask?: (text: string) => string;
}

