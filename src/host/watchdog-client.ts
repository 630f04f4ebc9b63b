/**
 * The daemon's side of the watchdog (src/watchdog.ts): spawns it and feeds it
 * heartbeats listing every bot's process group with the time left before the
 * bot must be dead (its lease could be granted elsewhere after that).
 *
 * The watchdog is supervised: when it dies (killed, crashed) its loss is
 * reported at once, it is restarted after a backoff (doubling while it keeps
 * dying, reset once it has lived a minute), and it is unhealthy in between
 * (/health fails: a frozen daemon would leave its bots trading meanwhile).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Socket } from 'node:net';
import { HOST_SCRIPT } from '../paths.js';
import type { Logger } from 'pino';

export interface WatchedGroup {
  pgid: number;
  startTicks: number | null;
  /** Boot-time ms (the `clock` given) by which the group must be dead. */
  killAt: number;
}

export interface WatchdogHooks {
  /** The watchdog died; `restartInMs`: when it will be started again. */
  lost?: (info: { pid: number | undefined; code: number | null; signal: string | null; restartInMs: number }) => void;
  /** A new watchdog runs again after a loss. */
  restarted?: (info: { pid: number | undefined; downMs: number; attempt: number }) => void;
}

const MAX_BACKOFF_MS = 10_000;
const STABLE_MS = 60_000;

export class Watchdog {
  private child: ChildProcess | null = null;
  private timer: NodeJS.Timeout | null = null;
  private restartTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** Losses in a row (a watchdog that lived STABLE_MS resets it). */
  private attempt = 0;
  private spawnedAt = 0;
  private lostAt: number | null = null;
  /** How many times it was restarted after a loss. */
  restarts = 0;

  constructor(
    private readonly groups: () => WatchedGroup[],
    private readonly logger: Logger,
    private readonly periodMs: number,
    /** The clock of `killAt` (the lease backend's boot-time clock). */
    private readonly clock: () => number,
    private readonly hooks: WatchdogHooks = {},
    /** The first restart's delay; doubled while it keeps dying. */
    private readonly restartMs = 500,
  ) {}

  start(): void {
    this.spawnChild();
    this.timer = setInterval(() => this.beat(), this.periodMs).unref();
  }

  /** Sends the current groups now (also after a start or a stop). */
  beat(): void {
    const stdin = this.child?.stdin;
    if (!stdin || stdin.destroyed) return;
    const now = this.clock();
    const groups = this.groups().map((g) => [g.pgid, g.startTicks, Math.max(0, Math.round(g.killAt - now))]);
    stdin.write(JSON.stringify({ groups }) + '\n');
  }

  /** Clean shutdown: no group left to kill, then close its stdin so it exits. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const child = this.child;
    this.child = null;
    if (!child?.stdin) return;
    child.stdin.end(JSON.stringify({ groups: [] }) + '\n');
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** True while a watchdog process runs and is fed. */
  get healthy(): boolean {
    const c = this.child;
    return c !== null && c.pid !== undefined && c.exitCode === null && c.signalCode === null;
  }

  /** Since when (performance.now) no watchdog runs; null while one does. */
  get downSince(): number | null {
    return this.lostAt;
  }

  private spawnChild(): void {
    // dist/host/watchdog.js, also from the TypeScript sources (tests).
    const script = HOST_SCRIPT('watchdog');
    if (!existsSync(script)) throw new Error('dist/host/watchdog.js not found: run npm run build');
    // Its own session: a signal to the daemon's group does not reach it; it outlives the daemon by design.
    const child = spawn(process.execPath, [script], { stdio: ['pipe', 'ignore', 'inherit'], detached: true });
    this.child = child;
    this.spawnedAt = performance.now();
    child.unref();
    let gone = false;
    const onGone = (code: number | null, signal: string | null) => {
      if (gone) return;
      gone = true;
      this.onLost(child, code, signal);
    };
    child.on('exit', (code, signal) => onGone(code, signal));
    child.on('error', (err) => {
      this.logger.error({ err }, 'the watchdog could not be run');
      onGone(null, null);
    });
    const stdin = child.stdin as Socket | null;
    stdin?.on('error', () => undefined);
    // The pipe must not keep the daemon alive; it closes when the daemon dies, which is the point.
    stdin?.unref();
    this.beat();
  }

  private onLost(child: ChildProcess, code: number | null, signal: string | null): void {
    if (this.stopped || this.child !== child) return;
    this.child = null;
    this.lostAt = performance.now();
    if (this.lostAt - this.spawnedAt >= STABLE_MS) this.attempt = 0;
    const restartInMs = Math.min(MAX_BACKOFF_MS, this.restartMs * 2 ** this.attempt);
    this.attempt++;
    this.logger.error({ pid: child.pid, code, signal, restartInMs }, 'the watchdog died: frozen-daemon protection is off until it is restarted');
    this.hooks.lost?.({ pid: child.pid, code, signal, restartInMs });
    this.restartTimer = setTimeout(() => this.restart(), restartInMs);
    this.restartTimer.unref();
  }

  private restart(): void {
    this.restartTimer = null;
    if (this.stopped) return;
    const downMs = this.lostAt === null ? 0 : Math.round(performance.now() - this.lostAt);
    try {
      this.spawnChild();
    } catch (err) {
      this.logger.error({ err }, 'the watchdog could not be restarted');
      this.lostAt ??= performance.now();
      this.restartTimer = setTimeout(() => this.restart(), Math.min(MAX_BACKOFF_MS, this.restartMs * 2 ** this.attempt++));
      this.restartTimer.unref();
      return;
    }
    if (!this.healthy) return; // died again at once: onLost scheduled the next try
    this.lostAt = null;
    this.restarts++;
    this.logger.warn({ pid: this.child?.pid, downMs }, 'the watchdog was restarted');
    this.hooks.restarted?.({ pid: this.child?.pid, downMs, attempt: this.attempt });
  }
}
