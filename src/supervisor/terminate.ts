/**
 * Stopping a bot's whole tree: the stop signal to its process group, up to
 * `graceMs` for it and every process carrying its instance marker to go, then
 * SIGKILL for whatever is left. Identities (pid + start time) are re-checked
 * before every signal, so a reused pid is never hit.
 *
 * The full /proc pass that finds the tree runs while the bot is shutting down,
 * not after it exited: once the leader is gone, only the processes already
 * known are re-checked, plus a full pass if the group still has members. (A
 * process that both leaves the group and appears during the grace period is
 * left to the duplicate hunter, which sees its stale instance marker.)
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { realClock, sleepOn, type Clock } from '../clock.js';
import { instanceProcesses, isAlive, readStat, type ProcStat } from '../proc/procfs.js';

export interface TerminateTarget {
  instanceId: string;
  pid: number;
  pgid: number;
  startTicks: number | null;
  /** Resolves when the leader is gone: its exit as our spawner reaped it, or a poll for adopted bots. */
  exited: Promise<unknown>;
  /** Adopted bots: look for the exit often from now on (the poll is slow otherwise). */
  hurry?: () => void;
}

export interface TerminateResult {
  /** True when SIGKILL was needed. */
  forced: boolean;
}

const POLL_MS = 15;
const KILL_WAIT_MS = 5000;

/**
 * The grace period runs on `clock` (tests drive it); waiting for the kernel to reap a SIGKILLed
 * process is real time (KILL_WAIT_MS), since no policy decides it.
 */
export async function terminate(t: TerminateTarget, signal: NodeJS.Signals, graceMs: number, clock: Clock = realClock): Promise<TerminateResult> {
  const deadline = clock.now() + graceMs;
  const ident = { id: t.instanceId, pgid: t.pgid, startTicks: t.startTicks };
  const signaled = new Set<number>();
  // Once `exited` resolved the leader is gone for good (reaped, or seen gone by identity): it is
  // not re-read (a failed read of a vanished /proc entry costs an exception each).
  let leaderGone = false;
  void t.exited.then(() => (leaderGone = true));
  if (isAlive(t.pid, t.startTicks)) {
    // The leader is alive, so the group id is still ours: signal the whole group at once.
    send(-t.pgid, signal);
    signaled.add(t.pid);
    t.hurry?.();
  }
  // While the bot shuts down: the rest of its tree. Members outside its group (setsid
  // escapees) did not get the group signal, so they get theirs now.
  let tree = instanceProcesses(ident);
  for (const p of tree) {
    if (p.pgid !== t.pgid && !signaled.has(p.pid)) send(p.pid, signal);
    signaled.add(p.pid);
  }
  await Promise.race([t.exited, sleepOn(clock, deadline - clock.now())]);
  for (;;) {
    tree = remaining(leaderGone ? tree.filter((p) => p.pid !== t.pid || p.startTicks !== t.startTicks) : tree, ident);
    if (tree.length === 0) return { forced: false };
    if (clock.now() >= deadline) break;
    for (const p of tree) {
      if (!signaled.has(p.pid)) {
        if (p.pgid !== t.pgid) send(p.pid, signal);
        signaled.add(p.pid);
      }
    }
    await sleepOn(clock, Math.min(POLL_MS, Math.max(1, deadline - clock.now())));
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
  return { forced: true };
}

/** What is left of the tree: the known members still alive, or a full pass while the group has members. */
function remaining(known: ProcStat[], ident: { id: string; pgid: number; startTicks: number | null }): ProcStat[] {
  if (groupExists(ident.pgid)) return instanceProcesses(ident);
  return known.filter((p) => {
    const st = readStat(p.pid);
    return st !== null && st.startTicks === p.startTicks && st.state !== 'Z' && st.state !== 'X';
  });
}

/** kill(-pgid, 0): ESRCH means no process (not even a zombie) is left in the group. */
function groupExists(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function send(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // ESRCH: already gone, which is what we want.
  }
}

/**
 * The same signal -> grace -> SIGKILL for one process that is not a bot we own (a duplicate
 * started by hand): only that process, never its group (it may share one with the user's shell),
 * identity re-checked before every signal. Resolves once it is gone (or after the kill wait).
 */
export async function terminateProcess(
  p: { pid: number; startTicks: number },
  signal: NodeJS.Signals,
  graceMs: number,
  clock: Clock = realClock,
): Promise<TerminateResult & { gone: boolean }> {
  const same = () => {
    const st = readStat(p.pid);
    return st !== null && st.startTicks === p.startTicks && st.state !== 'Z' && st.state !== 'X';
  };
  const deadline = clock.now() + graceMs;
  if (same()) send(p.pid, signal);
  while (same() && clock.now() < deadline) await sleepOn(clock, Math.min(POLL_MS, Math.max(1, deadline - clock.now())));
  if (!same()) return { forced: false, gone: true };
  send(p.pid, 'SIGKILL');
  const killUntil = Date.now() + KILL_WAIT_MS;
  while (same() && Date.now() < killUntil) await sleep(POLL_MS);
  return { forced: true, gone: !same() };
}
