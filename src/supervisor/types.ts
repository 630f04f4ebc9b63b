/** The controller's dependencies and its public view of a bot. */
import type { Account } from '../config/schema.js';
import type { LastExit } from '../db/registry.js';
import type { LockFacts } from '../errors.js';
import type { InstanceDeps } from './instance.js';
import type { LeaseDeps } from './lease.js';
import type { OutputDeps } from './output.js';
import type { BotState } from './states.js';
import type { Holder } from './diagnosis.js';

export type { BotKeys, BotListener } from './collaborators.js';

export interface BotDeps extends InstanceDeps, LeaseDeps, OutputDeps {
  logsDir: string;
  /** The environment every bot inherits (the daemon's, minus secrets, plus the .env variables it names). */
  env: { base(account: string): Readonly<Record<string, string>> };
  /** What a nonce diagnosis needs (SPEC 17); absent: every trip is `unknown`. */
  nonceFacts?: NonceFacts;
  gate: StartGate;
}

/**
 * The start gate (SPEC 14.5): every start, requested or automatic, passes it before anything is
 * spawned. The duplicate hunter is the daemon's: it ends live copies of the account (`kill`) or
 * refuses with DUPLICATE_RUNNING (`report`).
 */
export interface StartGate {
  clearBeforeStart(account: Account): Promise<void>;
}

export interface NonceFacts {
  /** The clock offset to this broker (measured now when stale), if it has a source. */
  offset(broker: string): Promise<{ offsetMs: number | null; error: string | null } | undefined>;
  maxOffsetMs(): number;
  /** Processes, not of this instance, whose environment holds the key's value. */
  holders(keyId: string, ownInstance: string): Holder[];
  /** The holders were found: the duplicate hunter scans now (and ends or reports them). */
  duplicatesFound(): Promise<unknown>;
}

export interface BotView {
  account: string;
  name: string;
  broker: string;
  brokerUsername: string;
  /** False: its account left the config while it ran (SPEC 14.3). */
  configured: boolean;
  state: BotState;
  pid: number | null;
  instanceId: string | null;
  startedAt: string | null;
  restarts: number;
  keyId: string | null;
  lastExit: LastExit | null;
  nonceErrors: { inWindow: number; total: number };
  lock: LockFacts | null;
  /** The bot's own STATUS= line (notify), or null. */
  status: string | null;
  /** Resident memory of the whole tree, and its CPU use in percent of one core (last sample). */
  rssBytes: number | null;
  cpuPercent: number | null;
  /** The last nonce-error diagnosis (SPEC 17): its cause, when, and the evidence in words. */
  diagnosis: { cause: string; at: string; evidence: string } | null;
}
