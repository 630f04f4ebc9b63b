/**
 * The daemon's side of the watchdog (src/watchdog.ts): spawns it and feeds it
 * heartbeats listing every bot's process group with the time left before the
 * bot must be dead (its lease could be granted elsewhere after that).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';

export interface WatchedGroup {
  pgid: number;
  startTicks: number | null;
  /** Boot-time ms (the `clock` given) by which the group must be dead. */
  killAt: number;
}

export class Watchdog {
  private child: ChildProcess | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly groups: () => WatchedGroup[],
    private readonly logger: Logger,
    private readonly periodMs: number,
    /** The clock of `killAt` (the lease backend's boot-time clock). */
    private readonly clock: () => number,
  ) {}

  start(): void {
    // dist/watchdog.js next to this module; from the TypeScript sources (tests) the built one.
    const script = [new URL('../watchdog.js', import.meta.url), new URL('../../dist/watchdog.js', import.meta.url)].map((u) => fileURLToPath(u)).find((f) => existsSync(f));
    if (!script) throw new Error('watchdog.js not found: run npm run build');
    // Its own session: a signal to the daemon's group does not reach it; it outlives the daemon by design.
    this.child = spawn(process.execPath, [script], { stdio: ['pipe', 'ignore', 'inherit'], detached: true });
    this.child.unref();
    this.child.on('exit', (code, signal) => {
      if (this.child) this.logger.error({ code, signal }, 'the watchdog exited; frozen-daemon protection is off until restart');
    });
    const stdin = this.child.stdin as Socket | null;
    stdin?.on('error', () => undefined);
    // The pipe must not keep the daemon alive; it closes when the daemon dies, which is the point.
    stdin?.unref();
    this.timer = setInterval(() => this.beat(), this.periodMs).unref();
    this.beat();
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
    if (this.timer) clearInterval(this.timer);
    const child = this.child;
    this.child = null;
    if (!child?.stdin) return;
    child.stdin.end(JSON.stringify({ groups: [] }) + '\n');
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }
}
