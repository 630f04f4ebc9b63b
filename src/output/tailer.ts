/**
 * Follows a bot's log file (which the bot writes to directly) and hands every
 * complete new line to a callback, keeping the file bounded. Three parts:
 * when to read (follower.ts), what was read (scanner.ts), and rotation past
 * `maxBytes` (rotation.ts). What the tailers of a daemon share is in one
 * TailerGroup, owned by whoever creates them.
 */
import { realClock, type Clock } from '../clock.js';
import { FollowHub, Follower } from './follower.js';
import { LogRotation } from './rotation.js';
import { LineScanner, READ_CHUNK } from './scanner.js';

export { lastLines } from './scanner.js';

/** What the tailers of one daemon share: the timers (on one clock) and the read buffer. */
export class TailerGroup {
  readonly hub: FollowHub;
  /** One read buffer for every tailer: reads are synchronous, so they never overlap (1,000 bots once held 256 KiB each). */
  readonly buf = Buffer.allocUnsafe(READ_CHUNK);

  constructor(readonly clock: Clock = realClock) {
    this.hub = new FollowHub(clock);
  }
}

export interface TailerOptions {
  /** The timers and buffer this tailer shares with the others (tests give one on a ManualClock). */
  group: TailerGroup;
  maxBytes: number;
  /** Rotated files kept: <log>.1 (newest) .. <log>.N. */
  files: number;
  /** Start at the current end of the file (old lines are not rescanned). */
  fromEnd: boolean;
  /** Or start here (a process we spawned began writing at this offset). */
  fromOffset?: number;
  /** The safety poll's period; fs.watch wakes the tailer in between. */
  pollMs?: number;
  /** After this long without output, a printing bot's file goes back from the shared timer to inotify. */
  quietMs?: number;
  /** Told about failures that must not stop the tailing (a throwing line handler, a failed rotation). */
  onError?: (what: string, err: unknown) => void;
}

export class LogTailer {
  private readonly scanner: LineScanner;
  private readonly rotation: LogRotation;
  private readonly follower: Follower;

  constructor(
    readonly path: string,
    onLine: (line: string) => void,
    private readonly opts: TailerOptions,
  ) {
    this.scanner = new LineScanner(path, opts.group.buf, onLine, opts.onError);
    this.rotation = new LogRotation(path, opts);
    this.follower = new Follower({ path, readNew: () => this.readNew(), letGo: () => this.scanner.close() }, opts.group.hub, opts);
  }

  start(): void {
    if (this.opts.fromOffset !== undefined) this.scanner.offset = this.opts.fromOffset;
    else if (this.opts.fromEnd) this.scanner.skipToEnd();
    this.follower.start();
  }

  /** Reads what is left and stops following. */
  stop(): void {
    if (this.follower.stopped) return;
    this.readNew();
    this.follower.stop();
    this.scanner.close();
    this.scanner.flush();
  }

  /**
   * Reads appended bytes now (also used by tests and at stop). A chatty bot's file stays open
   * between reads (one read() per wakeup instead of open, fstat, read, fstat, close) until it goes
   * quiet, so 1,000 silent bots hold no descriptors.
   */
  readNew(): void {
    if (this.follower.stopped) return;
    let rotationFailed = false;
    // Read in pieces no bigger than the rotation size, rotating as soon as it is passed: a file
    // read on the shared timer stays within about maxBytes however fast the bot prints.
    const got = this.scanner.read(Math.max(4096, this.opts.maxBytes), () => {
      // A rotation that failed (a full disk) is not retried for every piece of this read.
      if (this.rotation.due(this.scanner) && !rotationFailed) rotationFailed = !this.rotation.rotate(this.scanner);
    });
    if (got === null) return;
    if (got > 0) {
      this.follower.sawOutput();
      return;
    }
    // Nothing new: the file may have been truncated under us (on the shared timer this is
    // checked once the quiet spell sends the file back to inotify); a quiet file is let go of
    // until it has something new.
    if (!this.follower.active && this.scanner.release()) {
      this.scanner.restart();
      this.readNew();
    }
  }
}
