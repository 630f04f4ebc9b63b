/**
 * The daemon's health: a few named checks, each ok / degraded / failing.
 * `failing` (HTTP 503) only when the daemon cannot keep its promises:
 * storage or the lock backend unusable, or the data-dir lock lost.
 */
import type { ClockOffset } from './clock.js';
import { offsetWords } from '../supervisor/diagnosis.js';
import { LoopLag } from './loop-lag.js';
import type { Meta } from '../db/meta.js';
import type { EventStore } from '../events/store.js';
import type { DuplicateHunter } from './duplicates.js';
import type { KeyPool } from '../keys/pool.js';
import type { LockBackend } from '../db/locks.js';
import type { DaemonLock } from '../db/daemon-lock.js';
import type { Supervisor } from '../supervisor/supervisor.js';
import { BOT_STATES } from '../supervisor/states.js';

export type Status = 'ok' | 'degraded' | 'failing';

export interface Check {
  name: string;
  status: Status;
  detail: string;
}

export interface HealthSnapshot {
  status: Status;
  version: string;
  uptimeMs: number;
  bots: Record<string, number>;
  checks: Check[];
}

export interface HealthDeps {
  meta: Meta;
  events: EventStore;
  locks: LockBackend;
  daemonLock: DaemonLock;
  supervisor: Supervisor;
  version: string;
  startedAt: number;
  /** The clock events are stamped with (tests drive it). */
  now?: () => number;
  /** Extra checks that other monitors contribute (duplicates, keys, ...). */
  extraChecks?: () => Promise<Check[]>;
}

const LOOP_DELAY_DEGRADED_MS = 500;

/** Keys: degraded while a configured key has no secret in the environment. */
export async function keysCheck(keys: KeyPool): Promise<Check> {
  let list;
  try {
    list = await keys.list();
  } catch (err) {
    return { name: 'keys', status: 'degraded', detail: `cannot read key states: ${(err as Error).message}` };
  }
  const missing = list.filter((k) => k.state === 'missing').map((k) => k.id);
  const cooling = list.filter((k) => k.state === 'cooling').map((k) => k.id);
  if (missing.length > 0) return { name: 'keys', status: 'degraded', detail: `missing: ${missing.join(', ')}${cooling.length ? `; cooling: ${cooling.join(', ')}` : ''}` };
  return { name: 'keys', status: 'ok', detail: `${list.length} keys${cooling.length ? `; cooling: ${cooling.join(', ')}` : ''}` };
}

/** Live duplicates: degraded while any lives (a `report` account's copy, or a `kill` one not yet gone). */
export function duplicatesCheck(hunter: DuplicateHunter): Check {
  const live = hunter.live();
  const s = hunter.stats;
  const mean = s.scans > 0 ? s.totalScanMs / s.scans : 0;
  const scans = `${s.scans} scans of ${s.processes} processes, mean ${mean.toFixed(2)} ms, last ${s.lastScanMs.toFixed(2)} ms`;
  if (live.length === 0) return { name: 'duplicates', status: 'ok', detail: `no duplicate instance (${scans})` };
  return { name: 'duplicates', status: 'degraded', detail: live.map((d) => `${d.account} pid ${d.pid} (${d.policy})`).join(', ') };
}

/** Clock (SPEC 17): degraded while this machine is more than maxOffsetMs off an exchange it trades on. */
export function clockCheck(offsets: readonly ClockOffset[], maxOffsetMs: number): Check {
  const off = offsets.filter((o) => o.offsetMs !== null && Math.abs(o.offsetMs) > maxOffsetMs);
  const shown = offsets.map((o) => (o.offsetMs !== null ? `${o.broker} ${o.offsetMs > 0 ? '+' : ''}${o.offsetMs} ms` : `${o.broker} ?`)).join(', ');
  if (off.length > 0) return { name: 'clock', status: 'degraded', detail: `this machine's clock is off: ${off.map((o) => offsetWords(o.offsetMs!, o.broker)).join(', ')}; fix time sync (chrony, systemd-timesyncd)` };
  return { name: 'clock', status: 'ok', detail: offsets.length === 0 ? 'no exchange to measure against' : `within ${maxOffsetMs} ms: ${shown}` };
}

/** Alerts: degraded while a target keeps failing (its messages wait in the outbox). */
export function alertsCheck(alerts: { failing(): string[] }): Check {
  const failing = alerts.failing();
  return failing.length === 0 ? { name: 'alerts', status: 'ok', detail: 'every alert target delivers' } : { name: 'alerts', status: 'degraded', detail: `failing: ${failing.join(', ')}` };
}

const NONCE_WINDOW_MS = 5 * 60_000;

export class HealthService {
  private readonly loop = new LoopLag();

  constructor(private readonly deps: HealthDeps) {
    this.loop.start();
  }

  async snapshot(): Promise<HealthSnapshot> {
    const checks: Check[] = [];
    try {
      this.deps.meta.probeWrite(new Date().toISOString());
      checks.push({ name: 'storage', status: 'ok', detail: 'SQLite writable' });
    } catch (err) {
      checks.push({ name: 'storage', status: 'failing', detail: `SQLite not writable: ${(err as Error).message}` });
    }
    checks.push(
      this.deps.daemonLock.held()
        ? { name: 'daemon-lock', status: 'ok', detail: 'data dir lock held' }
        : { name: 'daemon-lock', status: 'failing', detail: 'data dir lock lost' },
    );
    try {
      await this.deps.locks.check();
      checks.push({ name: 'lock-backend', status: 'ok', detail: `${this.deps.locks.kind} reachable` });
    } catch (err) {
      checks.push({ name: 'lock-backend', status: 'failing', detail: `${this.deps.locks.kind}: ${(err as Error).message}` });
    }
    const bots: Record<string, number> = { total: 0 };
    for (const s of BOT_STATES) bots[s] = 0;
    const troubled: string[] = [];
    const unkillable: string[] = [];
    for (const b of this.deps.supervisor.all()) {
      bots.total = (bots.total ?? 0) + 1;
      bots[b.state] = (bots[b.state] ?? 0) + 1;
      const u = b.unkillable;
      if (u) unkillable.push(`${b.id} pid ${u.pid} survived SIGKILL (uninterruptible sleep or another user's process?)`);
      else if (b.state === 'backoff' || b.state === 'fatal') troubled.push(`${b.id} ${b.state}`);
    }
    // SPEC 14.7: a tree that outlived SIGKILL is said, not hidden: failing, naming it.
    checks.push(
      unkillable.length > 0
        ? { name: 'bots', status: 'failing', detail: [...unkillable, ...troubled].join(', ') }
        : troubled.length === 0
          ? { name: 'bots', status: 'ok', detail: 'no bot in backoff or fatal' }
          : { name: 'bots', status: 'degraded', detail: troubled.join(', ') },
    );
    try {
      const since = new Date((this.deps.now?.() ?? Date.now()) - NONCE_WINDOW_MS).toISOString();
      const rows = this.deps.events.rows.countByAccount('nonce.error', since);
      checks.push(
        rows.length === 0
          ? { name: 'nonce-errors', status: 'ok', detail: 'no nonce / API-key errors in the last 5 minutes' }
          : { name: 'nonce-errors', status: 'degraded', detail: `last 5 minutes: ${rows.map((r) => `${r.account} ${r.n}`).join(', ')}` },
      );
    } catch (err) {
      checks.push({ name: 'nonce-errors', status: 'degraded', detail: `cannot count: ${(err as Error).message}` });
    }
    const loop = this.loop.read();
    checks.push({
      name: 'event-loop',
      status: loop.maxMs > LOOP_DELAY_DEGRADED_MS ? 'degraded' : 'ok',
      detail: `busy ${loop.busyPct.toFixed(1)} % of the last ${(loop.windowMs / 1000).toFixed(1)} s, lag p99 ${loop.p99Ms.toFixed(1)} ms, max ${loop.maxMs.toFixed(1)} ms`,
    });
    try {
      checks.push(...((await this.deps.extraChecks?.()) ?? []));
    } catch (err) {
      // A broken monitor must not turn /health into a 500: say what could not be checked.
      checks.push({ name: 'monitors', status: 'degraded', detail: `a check could not run: ${(err as Error).message}` });
    }
    const status: Status = checks.some((c) => c.status === 'failing') ? 'failing' : checks.some((c) => c.status === 'degraded') ? 'degraded' : 'ok';
    return { status, version: this.deps.version, uptimeMs: (this.deps.now?.() ?? Date.now()) - this.deps.startedAt, bots, checks };
  }

  close(): void {
    this.loop.stop();
  }
}
