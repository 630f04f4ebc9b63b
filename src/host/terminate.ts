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
import { realClock, type Clock } from '../clock.js';
import { freshPass, instanceProcesses, isAlive, readStat, type ProcStat } from './procfs.js';

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
  /** False when some process of the tree outlived SIGKILL by KILL_WAIT_MS: its lock must stay (SPEC 14.7). */
  gone: boolean;
}

const POLL_MS = 15;
/** How long a SIGKILLed tree may take to go before it is called unkillable (SPEC 14.7). */
export const KILL_WAIT_MS = 5000;

/**
 * A stop's grace period, timed on the clock's monotonic time (a wall-clock step neither lengthens
 * nor shortens it). A later stop may cut it short (SPEC 14.6): the running stop then goes straight
 * on to SIGKILL.
 */
export class Grace {
  private end: number;
  private wake: (() => void) | null = null;

  constructor(
    private readonly clock: Clock,
    graceMs: number,
  ) {
    this.end = clock.mono() + Math.max(0, graceMs);
  }

  get over(): boolean {
    return this.clock.mono() >= this.end;
  }

  remaining(): number {
    return Math.max(0, this.end - this.clock.mono());
  }

  /** Cuts the grace to at most `graceMs` from now; true when that made it shorter. */
  shorten(graceMs: number): boolean {
    const end = this.clock.mono() + Math.max(0, graceMs);
    if (end >= this.end) return false;
    this.end = end;
    this.wake?.();
    return true;
  }

  /** Resolves after `ms` on the clock, or at once when the grace is cut short meanwhile. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        timer.cancel();
        if (this.wake === done) this.wake = null;
        resolve();
      };
      const timer = this.clock.setTimeout(done, Math.max(0, ms));
      this.wake = done;
    });
  }
}

/**
 * The grace period runs on `clock` (tests drive it); waiting for the kernel to reap a SIGKILLed
 * process is real monotonic time (KILL_WAIT_MS), since no policy decides it.
 */
export async function terminate(t: TerminateTarget, signal: NodeJS.Signals, grace: Grace | number, clock: Clock = realClock): Promise<TerminateResult> {
  const g = typeof grace === 'number' ? new Grace(clock, grace) : grace;
  const ident = { id: t.instanceId, pgid: t.pgid, startTicks: t.startTicks };
  const signaled = new Set<number>();
  // Once `exited` resolved the leader is gone for good (reaped, or seen gone by identity): it is
  // not re-read (a failed read of a vanished /proc entry costs an exception each).
  let leaderGone = false;
  void t.exited.then(() => (leaderGone = true));
  // The leader alive, or its group still has members (a dead leader's workers): the group id is
  // still ours (the kernel hands out no pid that is a live group's id), so signal it as a whole.
  // A pgid of 0 or 1 (unknown, init) is never signalled as a group.
  const grouped = t.pgid > 1;
  if (grouped && (isAlive(t.pid, t.startTicks) || groupExists(t.pgid))) {
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
  await Promise.race([t.exited, g.sleep(g.remaining())]);
  for (;;) {
    tree = remaining(leaderGone ? tree.filter((p) => p.pid !== t.pid || p.startTicks !== t.startTicks) : tree, ident);
    if (tree.length === 0) {
      // Looks gone: confirmed on a pass begun now (a marked process born since the shared pass
      // would otherwise outlive the lock; SPEC 14.4).
      await freshPass();
      tree = instanceProcesses(ident);
      if (tree.length === 0) return { forced: false, gone: true };
    }
    if (g.over) break;
    for (const p of tree) {
      if (!signaled.has(p.pid)) {
        if (p.pgid !== t.pgid) send(p.pid, signal);
        signaled.add(p.pid);
      }
    }
    await g.sleep(Math.min(POLL_MS, Math.max(1, g.remaining())));
  }
  // Grace is over: SIGKILL the group and every marked process, then wait for them to go.
  const killUntil = performance.now() + KILL_WAIT_MS;
  for (;;) {
    let rest = instanceProcesses(ident);
    if (rest.length === 0) {
      await freshPass();
      rest = instanceProcesses(ident);
    }
    if (rest.length === 0 || performance.now() > killUntil) break;
    if (grouped && groupExists(t.pgid)) send(-t.pgid, 'SIGKILL');
    for (const p of rest) {
      const st = readStat(p.pid);
      if (st && st.startTicks === p.startTicks) send(p.pid, 'SIGKILL');
    }
    await sleep(POLL_MS);
  }
  if (!leaderGone && isAlive(t.pid, t.startTicks)) await Promise.race([t.exited, sleep(Math.max(0, killUntil - performance.now()), undefined, { ref: false })]);
  // Only a tree seen gone is gone: a process that outlived SIGKILL (uninterruptible sleep, another
  // user's) keeps the lock (SPEC 14.4, 14.7).
  await freshPass();
  const gone = instanceProcesses(ident).length === 0 && (leaderGone || !isAlive(t.pid, t.startTicks));
  return { forced: true, gone };
}

/** What is left of the tree: the known members still alive, or a full pass while the group has members. */
function remaining(known: ProcStat[], ident: { id: string; pgid: number; startTicks: number | null }): ProcStat[] {
  if (ident.pgid > 1 && groupExists(ident.pgid)) return instanceProcesses(ident);
  return known.filter((p) => isAlive(p.pid, p.startTicks));
}

/** kill(-pgid, 0): ESRCH means no process (not even a zombie) is left in the group. */
function groupExists(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/**
 * ESRCH (already gone) is what we want. EPERM (another user's process) is not swallowed as
 * success: the caller's liveness check after the kill wait finds the survivor.
 */
function send(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // ESRCH: gone. EPERM: judged by the re-check of the tree that follows every signal.
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
): Promise<TerminateResult & { signalled: boolean }> {
  const same = () => isAlive(p.pid, p.startTicks);
  const g = new Grace(clock, graceMs);
  if (!same()) return { forced: false, gone: true, signalled: false };
  send(p.pid, signal);
  while (same() && !g.over) await g.sleep(Math.min(POLL_MS, Math.max(1, g.remaining())));
  if (!same()) return { forced: false, gone: true, signalled: true };
  send(p.pid, 'SIGKILL');
  const killUntil = performance.now() + KILL_WAIT_MS;
  while (same() && performance.now() < killUntil) await sleep(POLL_MS);
  return { forced: true, gone: !same(), signalled: true };
}
