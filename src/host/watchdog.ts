/**
 * The watchdog process (PostgreSQL mode): a tiny separate process that the
 * daemon feeds heartbeats on its stdin, one JSON line each:
 *   {"groups": [[pgid, startTicks, killInMs], ...]}
 * Each group is SIGKILLed once its `killInMs` runs out without a newer
 * heartbeat: a frozen daemon (SIGSTOP, a debugger, a stalled VM) cannot renew
 * its leases, so its bots must not trade past the moment another daemon could
 * be granted them. When stdin closes (the daemon died) every group is killed
 * at once and the watchdog exits. It depends on nothing but Node.
 *
 * Deadlines are on CLOCK_BOOTTIME (./uptime.js), which counts a suspend: after a
 * laptop wakes, every group whose time ran out during the sleep is killed on the
 * first check, whatever the daemon does.
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { bootClock } from './uptime.js';

type Group = { pgid: number; startTicks: number | null; deadline: number };
let groups: Group[] = [];

function startTicks(pid: number): number | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[19]);
  } catch {
    return null;
  }
}

function killGroup(g: Group): void {
  // A leader alive with another start time means the pid was reused: not ours.
  const st = startTicks(g.pgid);
  if (st !== null && g.startTicks !== null && st !== g.startTicks) return;
  try {
    process.kill(-g.pgid, 'SIGKILL');
  } catch {
    // ESRCH: the group is already gone
  }
}

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  try {
    const msg = JSON.parse(line) as { groups: [number, number | null, number][] };
    const now = bootClock();
    groups = msg.groups.map(([pgid, st, killInMs]) => ({ pgid, startTicks: st, deadline: now + killInMs }));
  } catch {
    // a malformed heartbeat is ignored; the deadlines already set keep running
  }
});
rl.on('close', () => {
  for (const g of groups) killGroup(g);
  process.exit(0);
});
setInterval(() => {
  const now = bootClock();
  const due = groups.filter((g) => now >= g.deadline);
  if (due.length === 0) return;
  for (const g of due) killGroup(g);
  groups = groups.filter((g) => now < g.deadline);
}, 50);
