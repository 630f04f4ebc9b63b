/**
 * Stopping a bot's whole tree: the stop signal to its process group, up to
 * `graceMs` for it and every process carrying its instance marker to go, then
 * SIGKILL for whatever is left. Identities (pid + start time) are re-checked
 * before every signal, so a reused pid is never hit.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { instanceProcesses, isAlive, readStat } from '../proc/procfs.js';

export interface TerminateTarget {
  instanceId: string;
  pid: number;
  pgid: number;
  startTicks: number | null;
  /** Resolves when the leader is gone: our child's exit event, or a poll for adopted bots. */
  exited: Promise<unknown>;
}

export interface TerminateResult {
  /** True when SIGKILL was needed. */
  forced: boolean;
  /** How many other processes of the tree had to be dealt with after the leader. */
  leftovers: number;
}

const POLL_MS = 15;
const KILL_WAIT_MS = 5000;

export async function terminate(t: TerminateTarget, signal: NodeJS.Signals, graceMs: number): Promise<TerminateResult> {
  const deadline = Date.now() + graceMs;
  const ident = { id: t.instanceId, pgid: t.pgid, startTicks: t.startTicks };
  const signaled = new Set<number>();
  if (isAlive(t.pid, t.startTicks)) {
    // The leader is alive, so the group id is still ours: signal the whole group at once.
    send(-t.pgid, signal);
    signaled.add(t.pid);
  }
  await Promise.race([t.exited, sleep(Math.max(0, deadline - Date.now()), undefined, { ref: false })]);
  let leftovers = 0;
  for (;;) {
    const rest = instanceProcesses(ident);
    if (rest.length === 0) return { forced: false, leftovers };
    if (Date.now() >= deadline) break;
    for (const p of rest) {
      if (p.pid !== t.pid && !signaled.has(p.pid)) leftovers++;
      // Group members already got the signal; a setsid grandchild did not.
      if (p.pgid !== t.pgid && !signaled.has(p.pid)) send(p.pid, signal);
      signaled.add(p.pid);
    }
    await sleep(Math.min(POLL_MS, Math.max(1, deadline - Date.now())));
  }
  // Grace is over: SIGKILL the group and every marked process, then wait for them to go.
  const killUntil = Date.now() + KILL_WAIT_MS;
  for (;;) {
    const rest = instanceProcesses(ident);
    if (rest.length === 0 || Date.now() > killUntil) break;
    for (const p of rest) {
      const st = readStat(p.pid);
      if (st && st.startTicks === p.startTicks) send(p.pid, 'SIGKILL');
    }
    await sleep(POLL_MS);
  }
  if (isAlive(t.pid, t.startTicks)) await Promise.race([t.exited, sleep(KILL_WAIT_MS, undefined, { ref: false })]);
  return { forced: true, leftovers };
}

function send(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // ESRCH: already gone, which is what we want.
  }
}
