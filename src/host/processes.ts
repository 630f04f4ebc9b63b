/**
 * The process table, scanned cheaply and often. On Linux /proc is read
 * directly: a process's argv and environment are read once (when it is first
 * seen, and again while it is young, since a wrapper may still exec into the
 * bot), and only processes that look like bots are re-read every scan; each
 * scan also re-reads a 1/`fullEvery` slice of the rest, to catch a late exec. Linux only
 * (docs/operations.md, Platforms).
 *
 * Listing /proc is the biggest part of an idle scan with 1,000 bots (a getdents over every
 * process). It is skipped when no process was created since the last listing: the kernel's most
 * recently handed-out pid (last field of /proc/loadavg) has not moved. A process that exited since
 * is then still in the table until a read of it fails or the next listing, which happens at least
 * every `fullEvery` scans anyway.
 */
import { readFileSync } from 'node:fs';
import { environValues, handedOutBetween, lastPid, lastPidWorks, listPids, readProcText, readStat, type PidMark, type ProcStat } from './procfs.js';

export interface ProcInfo extends ProcStat {
  /** argv joined with single spaces. */
  cmdline: string;
  /** BOTWARDEN_ACCOUNT / BOTWARDEN_INSTANCE from the environment, when readable. */
  account: string | null;
  instance: string | null;
  /** BOTWARDEN_SCOPE from the environment: a scoped daemon hunts only its own scope. */
  scope: string | null;
}

export type Classifier = (p: ProcInfo) => boolean;

/** Where the pids come from (tests fake the kernel's answers). */
export interface PidSource {
  /** The most recently handed-out pid, or -1 when unknown. */
  lastPid(): number;
  listPids(): number[];
  /** True when lastPid() follows process creation here (checked once, by creating one). */
  lastPidWorks(): boolean;
}

export const procPidSource: PidSource = { lastPid, listPids, lastPidWorks };

const YOUNG_S = 5;

export class ProcessScanner {
  private readonly known = new Map<number, ProcInfo>();
  private readonly seenIn = new Map<number, number>();
  /** Registered bots whose argv and environment were not read (see scan). */
  private readonly unread = new WeakSet<ProcInfo>();
  private scans = 0;
  private hz = 100;
  /** The last pid handed out at the last /proc listing, and the scan it happened in. */
  private listedAt = { lastPid: -1, scan: -Infinity };
  /** False when /proc/loadavg does not follow process creation here (or stopped to). */
  private gate: boolean;

  constructor(
    /** True for processes worth re-reading every scan (they look like bots). */
    private readonly interesting: Classifier,
    private readonly fullEvery = 30,
    /** True for processes known to be ours (registered bots): never re-read, whatever their age. */
    private readonly settled: Classifier = () => false,
    private readonly source: PidSource = procPidSource,
  ) {
    this.gate = source.lastPidWorks();
  }

  /** Clock ticks since boot at the last scan (processes' start times are in the same unit). */
  nowTicks = 0;

  /** How many scans listed /proc (the rest were answered from the table). */
  listings = 0;

  private listedNow = false;
  /** The kernel's pid cursor at this scan and at the one before (null when it cannot be trusted). */
  private mark: PidMark | null = null;
  private prevMark: PidMark | null = null;

  /**
   * The pids to look at: a fresh /proc listing, or the known ones when no process was created since
   * the last listing (and that listing is less than `fullEvery` scans old).
   */
  private pids(): Iterable<number> {
    const last = this.gate ? this.source.lastPid() : -1;
    this.prevMark = this.mark;
    this.mark = last >= 0 ? { last, at: performance.now() } : null;
    if (last >= 0 && last === this.listedAt.lastPid && this.scans - this.listedAt.scan < this.fullEvery) {
      this.listedNow = false;
      return this.known.keys(); // only updated in place below, never grown: safe to iterate
    }
    const pids = this.source.listPids();
    this.listings++;
    // A listing that finds a pid this table never saw, though the kernel said no pid was handed
    // out since the last one, means /proc/loadavg does not tell (some containers fake it): list always.
    if (last >= 0 && last === this.listedAt.lastPid && pids.some((pid) => pid !== process.pid && !this.seenIn.has(pid))) this.gate = false;
    this.listedAt = { lastPid: last, scan: this.scans };
    this.listedNow = true;
    return pids;
  }

  /** The current table. Cheap: new and young processes are read; old uninteresting ones are not. */
  async scan(): Promise<ProcInfo[]> {
    // Round-robin refresh: each scan re-reads 1/fullEvery of the known processes (by pid), so a
    // late exec is seen within fullEvery scans without one expensive sweep.
    const slot = this.scans++ % this.fullEvery;
    const nowTicks = uptimeTicks(this.hz);
    this.nowTicks = nowTicks;
    const gen = this.scans;
    const out: ProcInfo[] = [];
    for (const pid of this.pids()) {
      if (pid === process.pid) continue;
      // Marks the pid as present in this scan without allocating (a Set per scan was garbage).
      this.seenIn.set(pid, gen);
      let info = this.known.get(pid);
      const full = pid % this.fullEvery === slot;
      const young = info !== undefined && nowTicks - info.startTicks < YOUNG_S * this.hz;
      // A pid handed out again since the last scan is another process (pids wrap: 32,768 by default).
      const reused = info !== undefined && handedOutBetween(pid, this.prevMark, this.mark) === true;
      // A registered bot is never re-read, not even in its round-robin slot: it is ours whatever it
      // execs into, and its exit is watched elsewhere (then it is no longer settled).
      const unread = info !== undefined && this.unread.has(info) && !this.settled(info);
      if (!info || reused || unread || (!this.settled(info) && (full || young || this.interesting(info)))) {
        const st = readStat(pid);
        if (!st || st.state === 'Z' || st.state === 'X') {
          this.known.delete(pid);
          continue;
        }
        // An exec changes comm: a young process is re-read only then (or in its round-robin slot).
        const execd = info !== undefined && young && info.comm !== st.comm;
        const isNew = !info || info.startTicks !== st.startTicks;
        const bare: ProcInfo | null = isNew ? { ...st, cmdline: '', account: null, instance: null, scope: null } : null;
        if (bare && this.settled(bare)) {
          // A registered bot seen for the first time (a start burst): nobody needs its argv or
          // environment while it stays registered; they are read if it ever stops being.
          info = bare;
          this.unread.add(info);
        } else if (isNew || full || execd || unread) {
          // New process (or a reused pid, or re-reading a young one that may have exec'd).
          const cmdline = readCmdline(pid);
          if (cmdline === null) continue;
          // The environment is read once per process, and again only after an exec (argv changed).
          const same = info !== undefined && info.startTicks === st.startTicks && info.cmdline === cmdline;
          const env = same ? info! : readMarkers(pid);
          info = { ...st, cmdline, account: env.account, instance: env.instance, scope: env.scope };
        } else {
          const was = info!; // not new: known
          info = { ...was, ...st };
          if (this.unread.has(was)) this.unread.add(info);
        }
        this.known.set(pid, info);
      }
      out.push(info);
    }
    if (!this.listedNow) {
      // Not listed: nothing left the table but what a failed read removed above.
      return out;
    }
    for (const [pid, g] of this.seenIn) {
      if (g === gen) continue;
      this.seenIn.delete(pid);
      this.known.delete(pid);
    }
    return out;
  }
}

function readCmdline(pid: number): string | null {
  const raw = readProcText(`/proc/${pid}/cmdline`);
  if (raw === null) return null;
  // NUL-separated argv (kernel threads have none), matched joined with single spaces.
  const argv = raw.split('\0');
  if (argv[argv.length - 1] === '') argv.pop();
  return argv.join(' ');
}

const MARKERS = ['BOTWARDEN_ACCOUNT', 'BOTWARDEN_INSTANCE', 'BOTWARDEN_SCOPE'] as const;

function readMarkers(pid: number): { account: string | null; instance: string | null; scope: string | null } {
  const v = environValues(pid, MARKERS);
  return { account: v?.BOTWARDEN_ACCOUNT ?? null, instance: v?.BOTWARDEN_INSTANCE ?? null, scope: v?.BOTWARDEN_SCOPE ?? null };
}

function uptimeTicks(hz: number): number {
  try {
    return Number(readFileSync('/proc/uptime', 'latin1').split(' ')[0]) * hz;
  } catch {
    return 0;
  }
}
