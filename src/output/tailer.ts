/**
 * Follows a bot's log file (which the bot writes to directly) and hands every
 * complete new line to a callback. fs.watch wakes it up; a slow poll is the
 * safety net (watch events can be missed or coalesced). It also keeps the file
 * bounded: past `maxBytes` it rotates copy-then-truncate, because the bot
 * holds the file open in append mode and cannot be asked to reopen it.
 */
import { realClock, type Clock, type TimerHandle } from '../clock.js';
import { execFileSync } from 'node:child_process';
import { appendFileSync, closeSync, copyFileSync, existsSync, fstatSync, ftruncateSync, openSync, readSync, renameSync, rmSync, statfsSync, truncateSync, watch, type FSWatcher } from 'node:fs';

export interface TailerOptions {
  maxBytes: number;
  /** Rotated files kept: <log>.1 (newest) .. <log>.N. */
  files: number;
  /** Start at the current end of the file (old lines are not rescanned). */
  fromEnd: boolean;
  /** Or start here (a process we spawned began writing at this offset). */
  fromOffset?: number;
  pollMs?: number;
  /** The poll's clock (tests may drive it); fs.watch wakes the tailer in between. */
  clock?: Clock;
  /** After this long without output, a printing bot's file goes back from the shared timer to inotify. */
  quietMs?: number;
  /** Told about failures that must not stop the tailing (a throwing line handler, a failed rotation). */
  onError?: (what: string, err: unknown) => void;
}

const MAX_LINE = 64 * 1024;
/**
 * A bot that prints is read on one shared timer instead of an inotify wakeup per line: each
 * wakeup costs ~0.15 ms of CPU on a small VM, so 50 bots printing a line a second cost 1.8 % of a
 * core with inotify alone. After ACTIVE_QUIET_MS without output a tailer goes back to inotify.
 */
const ACTIVE_MS = 250;
const ACTIVE_QUIET_MS = 3000;
const activeTailers = new Set<LogTailer>();
let activeTimer: NodeJS.Timeout | null = null;

function armActive(): void {
  if (activeTimer !== null || activeTailers.size === 0) return;
  activeTimer = setTimeout(() => {
    activeTimer = null;
    for (const t of [...activeTailers]) t.pollActive();
    armActive();
  }, ACTIVE_MS);
  activeTimer.unref();
}
const CHUNK = 256 * 1024;
const SHARED_BUF = Buffer.allocUnsafe(CHUNK);

/**
 * One timer per clock and tick for every tailer's safety poll. Each member is polled every
 * `everyMs`, at a random phase, so 1,000 of them spread over the period without a timer each.
 */
class SafetyPoll {
  private readonly members = new Set<{ due: number; everyMs: number; fn: () => void }>();
  private timer: TimerHandle | null = null;

  constructor(
    private readonly clock: Clock,
    private readonly tickMs: number,
  ) {}

  add(fn: () => void, everyMs: number): { cancel(): void } {
    const m = { due: this.clock.now() + Math.floor(Math.random() * everyMs) + 1, everyMs, fn };
    this.members.add(m);
    this.arm();
    return { cancel: () => this.members.delete(m) };
  }

  private arm(): void {
    if (this.timer !== null || this.members.size === 0) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      const now = this.clock.now();
      for (const m of this.members) {
        if (m.due > now) continue;
        m.due = now + m.everyMs;
        m.fn();
      }
      this.arm();
    }, this.tickMs);
  }
}

const safetyPolls = new WeakMap<Clock, Map<number, SafetyPoll>>();

function safetyPoll(clock: Clock, tickMs: number): SafetyPoll {
  let byTick = safetyPolls.get(clock);
  if (!byTick) safetyPolls.set(clock, (byTick = new Map()));
  let p = byTick.get(tickMs);
  if (!p) byTick.set(tickMs, (p = new SafetyPoll(clock, tickMs)));
  return p;
}

export class LogTailer {
  private offset = 0;
  private partial = '';
  private watcher: FSWatcher | null = null;
  private poll: { cancel(): void } | null = null;
  private scheduled = false;
  private stopped = false;
  /** Held open while the bot writes (see readNew). */
  private fd: number | null = null;
  /** Read on the shared timer (the bot printed lately) rather than on inotify. */
  private active = false;
  private lastData = 0;
  /** One read buffer for every tailer: reads are synchronous, so they never overlap (1,000 bots once held 256 KiB each). */
  private readonly buf = SHARED_BUF;

  constructor(
    readonly path: string,
    private readonly onLine: (line: string) => void,
    private readonly opts: TailerOptions,
  ) {}

  start(): void {
    if (this.opts.fromOffset !== undefined) this.offset = this.opts.fromOffset;
    else if (this.opts.fromEnd) this.offset = sizeOf(this.path);
    this.watch();
    // What was written before the watch existed (a bot we spawned may have printed already).
    this.schedule();
    // fs.watch (inotify) wakes the tailer on the first append; the poll is only the safety net (30 s;
    // 2 s when no watch could be set up), each tailer at its own phase, all on one shared timer:
    // 1,000 tailers polling on timers of their own were 33 wakeups a second.
    const every = this.opts.pollMs ?? (this.watcher ? 30_000 : 2_000);
    this.poll = safetyPoll(this.opts.clock ?? realClock, Math.min(every, 1000)).add(() => this.schedule(), every);
  }

  private watch(): void {
    try {
      this.watcher = watch(this.path, { persistent: false }, () => this.schedule());
      this.watcher.on('error', () => this.closeWatcher());
    } catch {
      this.watcher = null; // the poll still works
    }
  }

  /** Output arrived: read on the shared timer from now on, not on an inotify wakeup per line. */
  private goActive(): void {
    if (this.active) return;
    this.active = true;
    this.closeWatcher();
    activeTailers.add(this);
    armActive();
  }

  /** The shared timer's read; after a quiet spell, back to inotify (and one read, for what came in between). */
  pollActive(): void {
    if (this.stopped) return;
    this.readNew();
    if (!this.active || performance.now() - this.lastData < (this.opts.quietMs ?? ACTIVE_QUIET_MS)) return;
    this.active = false;
    activeTailers.delete(this);
    this.closeFd();
    this.watch();
    this.readNew();
  }

  /** Reads what is left and stops following. */
  stop(): void {
    if (this.stopped) return;
    this.readNew();
    this.stopped = true;
    activeTailers.delete(this);
    this.closeFd();
    this.closeWatcher();
    this.poll?.cancel();
    if (this.partial) {
      this.emit(this.partial);
      this.partial = '';
    }
  }

  /**
   * Reads appended bytes now (also used by tests and at stop). A chatty bot's file stays open
   * between reads (one read() per wakeup instead of open, fstat, read, fstat, close) until it goes
   * quiet, so 1,000 silent bots hold no descriptors.
   */
  readNew(): void {
    if (this.stopped) return;
    const fd = this.openFd();
    if (fd === null) return;
    try {
      let got = 0;
      let rotationFailed = false;
      // Read in pieces no bigger than the rotation size, rotating as soon as it is passed: a file
      // read on the shared timer stays within about maxBytes however fast the bot prints.
      const len = Math.max(4096, Math.min(CHUNK, this.opts.maxBytes));
      for (;;) {
        const n = readSync(fd, this.buf, 0, len, this.offset);
        if (n <= 0) break;
        got += n;
        this.offset += n;
        this.consume(this.buf.toString('utf8', 0, n));
        // A rotation that failed (a full disk) is not retried for every piece of this read.
        if (this.offset > this.opts.maxBytes && !rotationFailed) rotationFailed = !this.rotate();
        // A regular file reads short only at its end: no second read() to learn that.
        if (n < len) break;
      }
      if (got > 0) {
        this.lastData = performance.now();
        this.goActive();
      } else if (!this.active) {
        // Nothing new: the file may have been truncated under us (on the shared timer this is
        // checked once the quiet spell sends the file back to inotify); a quiet file is let go of
        // until it has something new.
        const truncated = fstatSync(fd).size < this.offset;
        this.closeFd();
        if (truncated) {
          this.offset = 0;
          this.partial = '';
          this.readNew();
          return;
        }
      }
    } catch {
      this.closeFd();
    }
  }

  private openFd(): number | null {
    if (this.fd === null) {
      try {
        this.fd = openSync(this.path, 'r');
      } catch {
        return null;
      }
    }
    return this.fd;
  }

  private closeFd(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  private consume(text: string): void {
    const parts = (this.partial + text).split('\n');
    this.partial = parts.pop() ?? '';
    if (this.partial.length > MAX_LINE) {
      this.emit(this.partial);
      this.partial = '';
    }
    for (const line of parts) this.emit(line.endsWith('\r') ? line.slice(0, -1) : line);
  }

  private emit(line: string): void {
    try {
      this.onLine(line.length > MAX_LINE ? line.slice(0, MAX_LINE) : line);
    } catch (err) {
      // A scanner's bug must not stop the tailing, but it is told.
      this.opts.onError?.('a line handler threw', err);
    }
  }

  /**
   * Rotation without losing a line, though the bot keeps its file open in append mode:
   * - Where the filesystem can (ext4, xfs), the scanned whole blocks are copied to `<log>.1` and
   *   then cut from the head of the live file with fallocate's collapse-range. The kernel
   *   serialises that with the bot's appends, so no write can fall between copy and cut.
   * - Elsewhere (tmpfs, btrfs, no fallocate), copy-then-truncate: the copy is cut back to what was
   *   scanned, what the bot appended since is scanned and added to it in a loop, and the live file
   *   is truncated right after the last read. Only a write landing between that read and the
   *   ftruncate call itself is lost (docs/operations.md gives the measured figure).
   */
  private rotate(): boolean {
    try {
      shiftRotated(this.path, this.opts.files);
      if (!(this.collapse && this.rotateByCollapse())) this.rotateByTruncate();
      return true;
    } catch (err) {
      // Rotation is best effort; the next read tries again.
      this.opts.onError?.('log rotation failed', err);
      return false;
    }
  }

  private collapse = true;

  private rotateByCollapse(): boolean {
    const block = statfsSync(this.path).bsize;
    const cut = Math.floor(this.offset / block) * block;
    if (cut <= 0) return false;
    const rotated = `${this.path}.1`;
    copyFileSync(this.path, rotated);
    truncateSync(rotated, cut);
    try {
      execFileSync('fallocate', ['--collapse-range', '--offset', '0', '--length', String(cut), this.path], { stdio: 'ignore', timeout: 5000 });
    } catch {
      // Not supported here (or no fallocate): say so once, then truncate from now on.
      this.collapse = false;
      this.opts.onError?.('log rotation: collapse-range unsupported on this filesystem; using copy-then-truncate', null);
      return false;
    }
    this.offset -= cut;
    return true;
  }

  private rotateByTruncate(): void {
    let fd: number | null = null;
    try {
      const rotated = `${this.path}.1`;
      copyFileSync(this.path, rotated);
      truncateSync(rotated, this.offset);
      fd = openSync(this.path, 'r+');
      for (let i = 0; i < 100; i++) {
        const size = fstatSync(fd).size;
        if (size <= this.offset) break;
        while (this.offset < size) {
          const n = readSync(fd, this.buf, 0, Math.min(CHUNK, size - this.offset), this.offset);
          if (n <= 0) break;
          appendFileSync(rotated, this.buf.subarray(0, n));
          this.offset += n;
          this.consume(this.buf.toString('utf8', 0, n));
        }
      }
      ftruncateSync(fd, 0);
      this.offset = 0;
    } finally {
      if (fd !== null) closeSync(fd);
    }
  }

  private schedule(): void {
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.readNew();
    });
  }

  private closeWatcher(): void {
    this.watcher?.close();
    this.watcher = null;
  }
}

/** log.1 -> log.2 -> ... -> log.N (dropped), making room for a new log.1. */
function shiftRotated(path: string, files: number): void {
  rmSync(`${path}.${files}`, { force: true });
  for (let i = files - 1; i >= 1; i--) {
    if (existsSync(`${path}.${i}`)) renameSync(`${path}.${i}`, `${path}.${i + 1}`);
  }
}

function sizeOf(path: string): number {
  try {
    const fd = openSync(path, 'r');
    try {
      return fstatSync(fd).size;
    } finally {
      closeSync(fd);
    }
  } catch {
    return 0;
  }
}

/** The last `n` lines of a file (reading backwards in chunks, not the whole file). */
export function lastLines(path: string, n: number): string {
  if (n <= 0) return '';
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return '';
  }
  try {
    const size = fstatSync(fd).size;
    let pos = size;
    let chunks: Buffer[] = [];
    let newlines = 0;
    let total = 0;
    while (pos > 0 && newlines <= n) {
      const len = Math.min(64 * 1024, pos);
      pos -= len;
      const b = Buffer.allocUnsafe(len);
      readSync(fd, b, 0, len, pos);
      for (let i = 0; i < len; i++) if (b[i] === 10) newlines++;
      chunks.unshift(b);
      total += len;
      if (total > 64 * 1024 * 1024) break;
    }
    let text = Buffer.concat(chunks).toString('utf8');
    chunks = [];
    if (text.endsWith('\n')) text = text.slice(0, -1);
    const lines = text.split('\n');
    return lines.slice(Math.max(0, lines.length - n)).join('\n') + (lines.length > 0 && text !== '' ? '\n' : '');
  } finally {
    closeSync(fd);
  }
}
