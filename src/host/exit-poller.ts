/**
 * The exits of bots that are not our children (adopted at boot, or orphaned by a spawner that
 * died): noticed by polling their identity.
 */
import { realClock, type Clock, type TimerHandle } from '../clock.js';
import type { ExitStatus } from './fork.js';
import { isAlive, openStatHandle, type StatHandle } from './procfs.js';

const EXIT_POLL_MS = 250;
/** While a stop of an adopted bot is under way, its exit is looked for this often. */
const HURRY_POLL_MS = 10;

/**
 * An adopted bot is not our child: its exit is noticed by polling its identity.
 * One timer per daemon serves every adopted bot (50 bots: 200 small /proc reads a second).
 */
export class ExitPoller {
  private readonly watched = new Map<number, { handle: StatHandle | null; startTicks: number | null; resolve: (s: ExitStatus) => void }>();
  private timer: TimerHandle | null = null;
  /** Bots being stopped: polled every HURRY_POLL_MS, so a stop does not wait out the 250 ms poll. */
  private readonly urgent = new Set<number>();
  private fastTimer: TimerHandle | null = null;
  private closed = false;

  constructor(
    private readonly clock: Clock = realClock,
    private readonly intervalMs = EXIT_POLL_MS,
    /** Exits were found (a poll may find many): their records can share a commit. */
    private readonly onExits: () => void = () => undefined,
  ) {}

  watch(pid: number, startTicks: number | null): Promise<ExitStatus> {
    return new Promise((resolve) => {
      // Closed with its daemon: the bot is the next daemon's to adopt, nothing is watched any more.
      if (this.closed) return;
      // A held-open /proc/<pid>/stat where possible: one pread per check, immune to pid reuse.
      const handle = openStatHandle(pid, startTicks);
      this.watched.set(pid, { handle, startTicks, resolve });
      this.schedule();
    });
  }

  /** A stop of this bot is under way: look for its exit often until it is gone. */
  hurry(pid: number): void {
    if (!this.watched.has(pid)) return;
    this.urgent.add(pid);
    this.scheduleFast();
  }

  close(): void {
    this.closed = true;
    this.timer?.cancel();
    this.timer = null;
    this.fastTimer?.cancel();
    this.fastTimer = null;
    for (const w of this.watched.values()) w.handle?.close();
    this.watched.clear();
    this.urgent.clear();
  }

  /** Resolves the watch if the process is gone; true when it was. */
  private check(pid: number): boolean {
    const w = this.watched.get(pid);
    if (!w) return true;
    if (w.handle ? w.handle.alive() : isAlive(pid, w.startTicks)) return false;
    w.handle?.close();
    this.watched.delete(pid);
    this.onExits();
    // Not our child: its exit code went to its new parent, so it is unknown here.
    w.resolve({ code: null, signal: null });
    return true;
  }

  private pollAll(): void {
    for (const pid of [...this.watched.keys()]) if (this.check(pid)) this.urgent.delete(pid);
    this.timer = null;
    this.schedule();
  }

  private pollUrgent(): void {
    for (const pid of [...this.urgent]) if (this.check(pid)) this.urgent.delete(pid);
    this.fastTimer = null;
    this.scheduleFast();
  }

  private schedule(): void {
    if (this.timer || this.watched.size === 0) return;
    this.timer = this.clock.setTimeout(() => this.pollAll(), this.intervalMs);
  }

  private scheduleFast(): void {
    if (this.fastTimer || this.urgent.size === 0) return;
    this.fastTimer = this.clock.setTimeout(() => this.pollUrgent(), HURRY_POLL_MS);
  }
}
