/**
 * Bot states (the supervisord model) and the only transitions allowed between
 * them. Depends on nothing. A transition not in the table is a bug and throws.
 *
 *   stopped ──start──▶ starting ──alive startMs──▶ running
 *      ▲                  │  ╲                        │
 *      │              exits│   ╲stop               exits│ stop
 *      │                  ▼    ▼                      ▼  ▼
 *    fatal ◀──too many── backoff        stopping ──gone──▶ stopped
 */
export const BOT_STATES = ['stopped', 'starting', 'running', 'stopping', 'backoff', 'fatal'] as const;
export type BotState = (typeof BOT_STATES)[number];

const TRANSITIONS: { readonly [S in BotState]: readonly BotState[] } = {
  stopped: [
    'starting', // STOPPED -> STARTING: start requested
    'running', //  STOPPED -> RUNNING: a live bot re-adopted after a daemon restart
    'backoff', //  STOPPED -> BACKOFF: found dead at boot, restart policy applies
    'fatal', //    STOPPED -> FATAL: the command could not be spawned at all
  ],
  starting: [
    'running', //  STARTING -> RUNNING: alive for startMs
    'stopping', // STARTING -> STOPPING: stop requested
    'backoff', //  STARTING -> BACKOFF: exited too early, will retry
    'fatal', //    STARTING -> FATAL: exited too early too often, or could not spawn
    'stopped', //  STARTING -> STOPPED: exited early with restart policy `never`
  ],
  running: [
    'stopping', // RUNNING -> STOPPING: stop requested (or rotation, duplicate, shutdown)
    'backoff', //  RUNNING -> BACKOFF: exited, restart policy says restart
    'stopped', //  RUNNING -> STOPPED: exited, restart policy says no
    'fatal', //    RUNNING -> FATAL: exited and cannot be restarted (e.g. keys exhausted), or its tree is unkillable
  ],
  stopping: [
    'stopped', //  STOPPING -> STOPPED: the process (and its tree) is gone
    'starting', // STOPPING -> STARTING: stopped for a key rotation (or unresponsive, a limit, a schedule), restarts at once
    'fatal', //    STOPPING -> FATAL: stopped for rotation, but no usable key left; or unkillable
    'backoff', //  STOPPING -> BACKOFF: stopped for rotation, the restart refused by the start gate (a copy runs)
  ],
  backoff: [
    'starting', // BACKOFF -> STARTING: the backoff delay ran out
    'stopped', //  BACKOFF -> STOPPED: stop requested while waiting
    'fatal', //    BACKOFF -> FATAL: cannot restart (e.g. keys exhausted, a copy kept running)
    'backoff', //  BACKOFF -> BACKOFF: the restart was refused by the start gate (a copy runs); later again
  ],
  fatal: [
    'starting', // FATAL -> STARTING: start requested by an operator
    'fatal', //    FATAL -> FATAL: a new start could not even spawn
  ],
};

export class IllegalTransitionError extends Error {
  constructor(account: string, from: BotState, to: BotState) {
    super(`illegal bot state transition for '${account}': ${from} -> ${to}`);
    this.name = 'IllegalTransitionError';
  }
}

export function canTransition(from: BotState, to: BotState): boolean {
  return TRANSITIONS[from].includes(to);
}

export function assertTransition(account: string, from: BotState, to: BotState): void {
  if (!canTransition(from, to)) throw new IllegalTransitionError(account, from, to);
}

/** States in which the account is taken: a new start is refused with ACCOUNT_LOCKED. */
export const ACTIVE_STATES: ReadonlySet<BotState> = new Set(['starting', 'running', 'stopping', 'backoff']);

/** The event each state change emits. */
export const STATE_EVENT = {
  stopped: 'bot.stopped',
  starting: 'bot.starting',
  running: 'bot.running',
  stopping: 'bot.stopping',
  backoff: 'bot.backoff',
  fatal: 'bot.fatal',
} as const satisfies { [S in BotState]: string };

/** Why a bot is being stopped (`bot.stopping` reason). */
export const STOP_REASONS = ['request', 'rotation', 'duplicate', 'shutdown', 'fence', 'unresponsive', 'limit', 'schedule', 'clock'] as const;
export type StopReason = (typeof STOP_REASONS)[number];

/** Why a bot went FATAL (`bot.fatal` reason). */
export const FATAL_REASONS = ['exited-early', 'too-many-failures', 'spawn-failed', 'nonce-errors', 'keys-exhausted', 'lease-lost', 'unkillable', 'duplicate', 'unresponsive', 'limit', 'clock'] as const;
export type FatalReason = (typeof FATAL_REASONS)[number];
