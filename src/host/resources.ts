/**
 * What a bot's whole process tree uses (SPEC 16): resident memory and CPU time, from one read of
 * /proc/<pid>/stat per member (utime, stime and rss are all there).
 */
import { instanceProcesses } from './procfs.js';

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
