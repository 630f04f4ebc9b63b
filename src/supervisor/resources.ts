/**
 * What a bot's whole process tree uses (SPEC 16): resident memory and CPU time, from one read of
 * /proc/<pid>/stat per member (utime, stime and rss are all there). CPU percent is of one core,
 * between two samples. `LimitWatch` says when a limit has held for `forMs`.
 */
import { instanceProcesses } from '../proc/procfs.js';
import type { Account } from '../config/schema.js';

/** USER_HZ and the page size of every Linux this runs on (x86-64, arm64 with 4 KiB pages). */
const HZ = 100;
const PAGE = 4096;

export interface TreeUsage {
  rssBytes: number;
  /** utime + stime of every live member, in seconds. */
  cpuSeconds: number;
}

export function treeUsage(inst: { instanceId: string; pgid: number; startTicks: number | null }): TreeUsage {
  let rss = 0;
  let ticks = 0;
  // Each member comes back freshly read (its stat holds utime, stime and rss): no second read.
  // A pass up to 5 s old finds the members (each is re-read now): sampling 1,000 bots must not list
  // /proc for each one whenever some process was created in the last 100 ms. A bot younger than
  // that pass (its leader not in it) is looked up on a current one.
  const ident = { id: inst.instanceId, pgid: inst.pgid, startTicks: inst.startTicks };
  let members = instanceProcesses(ident, { maxAgeMs: 5000 });
  if (!members.some((p) => p.pid === inst.pgid)) members = instanceProcesses(ident);
  for (const p of members) {
    ticks += p.cpuTicks || 0;
    rss += (p.rssPages || 0) * PAGE;
  }
  return { rssBytes: rss, cpuSeconds: ticks / HZ };
}

type Limits = NonNullable<Account['limits']>;

export class LimitWatch {
  /** Since when (clock ms) each limit has been over, or absent. */
  private readonly overSince = new Map<'memory' | 'cpu', number>();
  private readonly fired = new Set<'memory' | 'cpu'>();

  constructor(private readonly limits: Limits) {}

  /** Judges one sample; returns the limit that has now held for forMs (once per episode). */
  judge(nowMs: number, rssBytes: number, cpuPercent: number | null): { limit: 'memory' | 'cpu'; value: number } | null {
    const l = this.limits;
    const checks: ['memory' | 'cpu', boolean, number][] = [
      ['memory', l.memoryMB !== undefined && rssBytes > l.memoryMB * 1024 * 1024, rssBytes],
      ['cpu', l.cpuPercent !== undefined && cpuPercent !== null && cpuPercent > l.cpuPercent, cpuPercent ?? 0],
    ];
    for (const [limit, over, value] of checks) {
      if (!over) {
        this.overSince.delete(limit);
        this.fired.delete(limit);
        continue;
      }
      const since = this.overSince.get(limit) ?? nowMs;
      this.overSince.set(limit, since);
      if (nowMs - since >= l.forMs && !this.fired.has(limit)) {
        this.fired.add(limit);
        return { limit, value };
      }
    }
    return null;
  }
}
