/**
 * The process table, scanned cheaply and often. On Linux /proc is read
 * directly: a process's argv and environment are read once (when it is first
 * seen, and again while it is young, since a wrapper may still exec into the
 * bot), and only processes that look like bots are re-read every scan; each
 * scan also re-reads a 1/`fullEvery` slice of the rest, to catch a late exec. Linux only
 * (docs/operations.md, Platforms).
 */
import { readFileSync } from 'node:fs';
import { environValue, listPids, readProcText, readStat, type ProcStat } from '../proc/procfs.js';

export interface ProcInfo extends ProcStat {
  /** argv joined with single spaces. */
  cmdline: string;
  /** BOTWARDEN_ACCOUNT / BOTWARDEN_INSTANCE from the environment, when readable. */
  account: string | null;
  instance: string | null;
}

export type Classifier = (p: ProcInfo) => boolean;

const YOUNG_S = 5;

export class ProcessScanner {
  private readonly known = new Map<number, ProcInfo>();
  private readonly seenIn = new Map<number, number>();
  private scans = 0;
  private hz = 100;

  constructor(
    /** True for processes worth re-reading every scan (they look like bots). */
    private readonly interesting: Classifier,
    private readonly fullEvery = 30,
    /** True for processes known to be ours (registered bots): never re-read, whatever their age. */
    private readonly settled: Classifier = () => false,
  ) {}

  /** The current table. Cheap: new and young processes are read; old uninteresting ones are not. */
  async scan(): Promise<ProcInfo[]> {
    // Round-robin refresh: each scan re-reads 1/fullEvery of the known processes (by pid), so a
    // late exec is seen within fullEvery scans without one expensive sweep.
    const slot = this.scans++ % this.fullEvery;
    const nowTicks = uptimeTicks(this.hz);
    const gen = this.scans;
    const out: ProcInfo[] = [];
    for (const pid of listPids()) {
      if (pid === process.pid) continue;
      // Marks the pid as present in this scan without allocating (a Set per scan was garbage).
      this.seenIn.set(pid, gen);
      let info = this.known.get(pid);
      const full = pid % this.fullEvery === slot;
      const young = info !== undefined && nowTicks - info.startTicks < YOUNG_S * this.hz;
      if (!info || full || (!this.settled(info) && (young || this.interesting(info)))) {
        const st = readStat(pid);
        if (!st || st.state === 'Z' || st.state === 'X') {
          this.known.delete(pid);
          continue;
        }
        // An exec changes comm: a young process is re-read only then (or in its round-robin slot).
        const execd = info !== undefined && young && info.comm !== st.comm;
        if (!info || info.startTicks !== st.startTicks || full || execd) {
          // New process (or a reused pid, or re-reading a young one that may have exec'd).
          const cmdline = readCmdline(pid);
          if (cmdline === null) continue;
          // The environment is read once per process, and again only after an exec (argv changed).
          const same = info !== undefined && info.startTicks === st.startTicks && info.cmdline === cmdline;
          const env = same ? info! : readMarkers(pid);
          info = { ...st, cmdline, account: env.account, instance: env.instance };
        } else {
          info = { ...info, ...st };
        }
        this.known.set(pid, info);
      }
      out.push(info);
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

function readMarkers(pid: number): { account: string | null; instance: string | null } {
  const account = environValue(pid, 'BOTWARDEN_ACCOUNT');
  const instance = account === undefined ? undefined : environValue(pid, 'BOTWARDEN_INSTANCE');
  return { account: account ?? null, instance: instance ?? null };
}

function uptimeTicks(hz: number): number {
  try {
    return Number(readFileSync('/proc/uptime', 'latin1').split(' ')[0]) * hz;
  } catch {
    return 0;
  }
}
