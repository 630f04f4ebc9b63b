/**
 * When to read a log file: fs.watch wakes a quiet file's reader, a printing
 * bot's file is read on a timer shared by all, and a slow poll is the safety
 * net (watch events can be missed or coalesced). The shared timers live in a
 * FollowHub, owned by whoever creates the followers, on its clock.
 */
import { watch, type FSWatcher } from 'node:fs';
import type { Clock, TimerHandle } from '../clock.js';

/**
 * A bot that prints is read on one shared timer instead of an inotify wakeup per line: each
 * wakeup costs ~0.15 ms of CPU on a small VM, so 50 bots printing a line a second cost 1.8 % of a
 * core with inotify alone. After ACTIVE_QUIET_MS without output a follower goes back to inotify.
 */
const ACTIVE_MS = 250;
const ACTIVE_QUIET_MS = 3000;

/**
 * One timer per tick for every follower's safety poll. Each member is polled every `everyMs`, at
 * a random phase, so 1,000 of them spread over the period without a timer each.
 */
class SafetyPoll {
  private readonly members = new Set<{ due: number; everyMs: number; fn: () => void }>();
  private timer: TimerHandle | null = null;

  constructor(
    private readonly clock: Clock,
    private readonly tickMs: number,
  ) {}

  add(fn: () => void, everyMs: number): TimerHandle {
    const m = { due: this.clock.mono() + Math.floor(Math.random() * everyMs) + 1, everyMs, fn };
    this.members.add(m);
    this.arm();
    return { cancel: () => this.members.delete(m) };
  }

  private arm(): void {
    if (this.timer !== null || this.members.size === 0) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      const now = this.clock.mono();
      for (const m of this.members) {
        if (m.due > now) continue;
        m.due = now + m.everyMs;
        m.fn();
      }
      this.arm();
    }, this.tickMs);
  }
}

/** The timers a daemon's followers share: the active timer and the safety polls. */
export class FollowHub {
  private readonly active = new Set<Follower>();
  private activeTimer: TimerHandle | null = null;
  private readonly polls = new Map<number, SafetyPoll>();

  constructor(readonly clock: Clock) {}

  /** Calls `fn` every `everyMs`, at a random phase, on a timer shared with every other poll. */
  safetyPoll(fn: () => void, everyMs: number): TimerHandle {
    const tickMs = Math.min(everyMs, 1000);
    let p = this.polls.get(tickMs);
    if (!p) this.polls.set(tickMs, (p = new SafetyPoll(this.clock, tickMs)));
    return p.add(fn, everyMs);
  }

  addActive(f: Follower): void {
    this.active.add(f);
    this.armActive();
  }

  removeActive(f: Follower): void {
    this.active.delete(f);
  }

  private armActive(): void {
    if (this.activeTimer !== null || this.active.size === 0) return;
    this.activeTimer = this.clock.setTimeout(() => {
      this.activeTimer = null;
      for (const f of [...this.active]) f.pollActive();
      this.armActive();
    }, ACTIVE_MS);
  }
}

export interface FollowOptions {
  /** The safety poll's period (default 30 s; 2 s when no watch could be set up). */
  pollMs?: number;
  /** After this long without output, a printing bot's file goes back from the shared timer to inotify. */
  quietMs?: number;
}

/** What a follower wakes. */
export interface FollowedFile {
  readonly path: string;
  /** Reads what was appended (reporting new bytes with `sawOutput`). */
  readNew(): void;
  /** Closes the file held open while it was read on the shared timer. */
  letGo(): void;
}

/** Decides when one file is read: on inotify while it is quiet, on the hub's timer while the bot prints. */
export class Follower {
  private watcher: FSWatcher | null = null;
  private poll: TimerHandle | null = null;
  private scheduled = false;
  private ended = false;
  /** Read on the shared timer (the bot printed lately) rather than on inotify. */
  private shared = false;
  private lastData = 0;

  constructor(
    private readonly file: FollowedFile,
    private readonly hub: FollowHub,
    private readonly opts: FollowOptions = {},
  ) {}

  get active(): boolean {
    return this.shared;
  }

  get stopped(): boolean {
    return this.ended;
  }

  start(): void {
    this.watch();
    // What was written before the watch existed (a bot we spawned may have printed already).
    this.schedule();
    // fs.watch (inotify) wakes the reader on the first append; the poll is only the safety net (30 s;
    // 2 s when no watch could be set up), each file at its own phase, all on one shared timer:
    // 1,000 tailers polling on timers of their own were 33 wakeups a second.
    const every = this.opts.pollMs ?? (this.watcher ? 30_000 : 2_000);
    this.poll = this.hub.safetyPoll(() => this.schedule(), every);
  }

  /** Output arrived: read on the shared timer from now on, not on an inotify wakeup per line. */
  sawOutput(): void {
    this.lastData = this.hub.clock.mono();
    if (this.shared) return;
    this.shared = true;
    this.closeWatcher();
    this.hub.addActive(this);
  }

  /** The shared timer's read; after a quiet spell, back to inotify (and one read, for what came in between). */
  pollActive(): void {
    if (this.ended) return;
    this.file.readNew();
    if (!this.shared || this.hub.clock.mono() - this.lastData < (this.opts.quietMs ?? ACTIVE_QUIET_MS)) return;
    this.shared = false;
    this.hub.removeActive(this);
    this.file.letGo();
    this.watch();
    this.file.readNew();
  }

  /** Stops waking the reader (it has done its last read). */
  stop(): void {
    if (this.ended) return;
    this.ended = true;
    this.hub.removeActive(this);
    this.closeWatcher();
    this.poll?.cancel();
  }

  private watch(): void {
    try {
      this.watcher = watch(this.file.path, { persistent: false }, () => this.schedule());
      this.watcher.on('error', () => this.closeWatcher());
    } catch {
      this.watcher = null; // the poll still works
    }
  }

  /** Wakeups in one turn of the event loop (a burst of watch events) make one read. */
  private schedule(): void {
    if (this.scheduled || this.ended) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.file.readNew();
    });
  }

  private closeWatcher(): void {
    this.watcher?.close();
    this.watcher = null;
  }
}
