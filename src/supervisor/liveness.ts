/**
 * Is a live bot still working? (SPEC 16) One watch per running instance, on the injected clock:
 *   silence         no output line for `silenceMs`;
 *   heartbeat-file  the file's mtime older than `staleMs`;
 *   http            `failures` probes in a row failed (or timed out);
 *   ready           with `notify`, no READY=1 within `graceMs` of the start;
 *   watchdog        with `notify` and `watchdogMs`, no WATCHDOG=1 for that long after READY=1.
 * Nothing counts during `graceMs` after the start (a slow starter is not restarted forever: its
 * checks begin only after its grace, and each restart counts toward maxRestarts, so a bot that is
 * never healthy ends `fatal` instead of looping). A check that fired stays quiet until it passes again.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import type { Clock, TimerHandle } from '../clock.js';
import type { Account } from '../config/schema.js';
import type { NotifyMessage } from '../host/notify.js';

export type LivenessCheck = 'silence' | 'heartbeat-file' | 'http' | 'ready' | 'watchdog';
type Config = NonNullable<Account['liveness']>;

export interface LivenessHooks {
  /** When the bot last printed a line (clock ms), or null if not since the watch began. */
  lastOutputAt(): number | null;
  unresponsive(check: LivenessCheck, lastSeenMs: number | null): void;
}

export class LivenessWatch {
  private timer: TimerHandle | null = null;
  private httpTimer: TimerHandle | null = null;
  private readonly checksFrom: number;
  private readyAt: number | null = null;
  private lastWatchdog: number | null = null;
  private httpFailures = 0;
  /** False for an adopted bot until its first WATCHDOG=1 reaches this daemon. */
  private watchdogArmed = true;
  private lastHttpOk: number | null = null;
  private readonly fired = new Set<LivenessCheck>();
  private closed = false;

  constructor(
    private readonly cfg: Config,
    private readonly clock: Clock,
    private readonly startedAt: number,
    private readonly cwd: string,
    private readonly hooks: LivenessHooks,
  ) {
    this.checksFrom = startedAt + cfg.graceMs;
  }

  start(): void {
    this.schedule();
    if (this.cfg.http) this.scheduleHttp(this.cfg.http.intervalMs);
  }

  stop(): void {
    this.closed = true;
    this.timer?.cancel();
    this.httpTimer?.cancel();
  }

  /** A datagram from the bot's NOTIFY_SOCKET. */
  notified(m: NotifyMessage): void {
    const now = this.clock.now();
    if (m.ready) this.readyAt ??= now;
    if (m.watchdog) {
      this.lastWatchdog = now;
      this.watchdogArmed = true;
    }
  }

  /**
   * A bot adopted from the last daemon: it said READY=1 to that one. Its watchdog is judged from
   * its first WATCHDOG=1 to this daemon on: a client that connects its socket once (Python's
   * sdnotify, which freqtrade uses) still sends to the dead daemon's socket, and would otherwise
   * be restarted as unresponsive while it trades normally.
   */
  adopted(): void {
    this.readyAt ??= this.clock.now();
    this.watchdogArmed = false;
  }

  get ready(): boolean {
    return this.readyAt !== null;
  }

  private tickMs(): number {
    const c = this.cfg;
    const spans = [c.silenceMs, c.heartbeatFile !== undefined ? c.staleMs : undefined, c.watchdogMs].filter((x): x is number => x !== undefined);
    // A tenth of the shortest span, between 50 ms and 30 s: 1,000 bots with a 5-minute silence
    // check wake up 33 times a second, not 1,000.
    return Math.max(50, Math.min(30_000, ...spans.map((s) => s / 10)));
  }

  private schedule(): void {
    if (this.closed) return;
    this.timer = this.clock.setTimeout(() => {
      this.tick();
      this.schedule();
    }, this.tickMs());
  }

  private tick(): void {
    const now = this.clock.now();
    if (now < this.checksFrom && !(this.cfg.notify && this.readyAt !== null)) return;
    const c = this.cfg;
    if (c.silenceMs !== undefined) {
      const last = this.hooks.lastOutputAt() ?? this.startedAt;
      this.judge('silence', now - last > c.silenceMs && now >= this.checksFrom, last);
    }
    if (c.heartbeatFile !== undefined) {
      const mtime = this.mtime(c.heartbeatFile);
      const last = mtime ?? this.startedAt;
      this.judge('heartbeat-file', now - last > c.staleMs && now >= this.checksFrom, mtime);
    }
    if (c.notify) {
      this.judge('ready', this.readyAt === null && now >= this.checksFrom, null);
      if (c.watchdogMs !== undefined && this.readyAt !== null && this.watchdogArmed) {
        const last = this.lastWatchdog ?? this.readyAt;
        this.judge('watchdog', now - last > c.watchdogMs, this.lastWatchdog);
      }
    }
  }

  private judge(check: LivenessCheck, failing: boolean, lastSeen: number | null): void {
    if (!failing) {
      this.fired.delete(check);
      return;
    }
    if (this.fired.has(check)) return;
    this.fired.add(check);
    this.hooks.unresponsive(check, lastSeen);
  }

  private mtime(file: string): number | null {
    try {
      return statSync(path.resolve(this.cwd, file)).mtimeMs;
    } catch {
      return null;
    }
  }

  private scheduleHttp(ms: number): void {
    if (this.closed) return;
    this.httpTimer = this.clock.setTimeout(() => void this.probe().finally(() => this.scheduleHttp(this.cfg.http!.intervalMs)), ms);
  }

  private async probe(): Promise<void> {
    const h = this.cfg.http!;
    let ok: boolean;
    try {
      const res = await fetch(h.url, { signal: AbortSignal.timeout(h.timeoutMs), redirect: 'manual' });
      await res.arrayBuffer().catch(() => undefined);
      ok = res.status >= 200 && res.status < 400;
    } catch {
      ok = false;
    }
    if (this.closed) return;
    const now = this.clock.now();
    if (ok) {
      this.httpFailures = 0;
      this.lastHttpOk = now;
    } else this.httpFailures++;
    this.judge('http', this.httpFailures >= h.failures && now >= this.checksFrom, this.lastHttpOk);
  }
}
