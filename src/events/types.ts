/** Event types (docs/events.md), as a closed union. */
export const EVENT_TYPES = [
  'daemon.started',
  'daemon.stopping',
  'daemon.woke',
  'watchdog.lost',
  'watchdog.restarted',
  'bot.starting',
  'bot.running',
  'bot.stopping',
  'bot.stopped',
  'bot.exited',
  'bot.backoff',
  'bot.fatal',
  'bot.adopted',
  'bot.unresponsive',
  'bot.limit_exceeded',
  'bot.prestop',
  'lock.acquired',
  'lock.released',
  'lock.stale_removed',
  'duplicate.detected',
  'duplicate.killed',
  'duplicate.suspected',
  'nonce.error',
  'nonce.diagnosis',
  'key.rotated',
  'health',
  'disk.low',
  'storage.recovered',
  'audit',
] as const;

export type EventType = (typeof EVENT_TYPES)[number];

export interface BotwardenEvent {
  id: number;
  type: EventType;
  at: string;
  account?: string;
  [field: string]: unknown;
}

export interface EventFilter {
  /** Type prefixes: `bot.` matches every bot event, `nonce.error` just that one. */
  types?: string[] | undefined;
  account?: string | undefined;
}

export function matchesFilter(e: BotwardenEvent, f: EventFilter): boolean {
  if (f.account !== undefined && e.account !== f.account) return false;
  if (f.types !== undefined && f.types.length > 0 && !f.types.some((p) => e.type.startsWith(p))) return false;
  return true;
}
