/**
 * The restart policy, pure: after an unexpected exit, what comes next. No
 * processes, no clock, no I/O; the controller acts on the answer. Table-tested
 * in test/policy.test.ts.
 */
import type { FatalReason } from './states.js';

export interface RestartConfig {
  policy: 'never' | 'on-failure' | 'always';
  maxRestarts: number;
  backoffMs: number;
  maxBackoffMs: number;
}

export interface ExitFacts {
  /** The bot exited before `startMs` (a quick failure). */
  wasStarting: boolean;
  /** Quick failures in a row before this exit. */
  quickFailures: number;
  code: number | null;
  signal: string | null;
}

export type NextStep =
  | { kind: 'backoff'; attempt: number; delayMs: number; quickFailures: number }
  | { kind: 'fatal'; reason: FatalReason; quickFailures: number }
  | { kind: 'stopped'; quickFailures: number };

/** Delay before restart attempt `attempt` (1-based): backoffMs * 2^(attempt-1), capped. */
export function backoffDelay(r: RestartConfig, attempt: number): number {
  return Math.min(r.maxBackoffMs, r.backoffMs * 2 ** (attempt - 1));
}

export function afterExit(e: ExitFacts, r: RestartConfig): NextStep {
  if (e.wasStarting) {
    const quickFailures = e.quickFailures + 1;
    // STARTING -> FATAL: it never came up, and may not retry (more).
    if (r.policy === 'never') return { kind: 'fatal', reason: 'exited-early', quickFailures };
    if (quickFailures > r.maxRestarts) return { kind: 'fatal', reason: 'too-many-failures', quickFailures };
    // STARTING -> BACKOFF: exited before startMs, try again later.
    return { kind: 'backoff', attempt: quickFailures, delayMs: backoffDelay(r, quickFailures), quickFailures };
  }
  const failed = e.code !== 0 || e.signal !== null;
  // RUNNING -> BACKOFF: it ran fine for a while; restart after the first delay step.
  if (r.policy === 'always' || (r.policy === 'on-failure' && failed)) return { kind: 'backoff', attempt: 1, delayMs: backoffDelay(r, 1), quickFailures: 0 };
  // RUNNING -> STOPPED: exited and the policy says leave it.
  return { kind: 'stopped', quickFailures: 0 };
}
