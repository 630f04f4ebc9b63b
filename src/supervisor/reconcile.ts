/**
 * Boot: make the registry true again before serving. Every instance the last
 * daemon left "live" is checked against /proc (pid + start time, zombies are
 * dead): alive => adopted (same pid, running, lock kept), also when its account
 * left the config (then `configured: false`); leader dead but some of its tree
 * alive => that tree is stopped (signal, grace, SIGKILL) first; dead => marked
 * exited, and its restart policy applied. A lock no adopted bot holds is removed
 * only when no process of its instance lives (SPEC 14.4): the one stale-lock rule.
 */
import type { Logger } from 'pino';
import type { LockBackend, LockRow } from '../db/locks.js';
import type { InstanceRow, Registry } from '../db/registry.js';
import type { EventStore } from '../events/store.js';
import { Grace, type ProcessHost } from '../host/host.js';
import type { Clock } from '../clock.js';
import { recordExit } from './instance.js';
import { unconfiguredAccount } from './unconfigured.js';
import type { BotController } from './bot.js';
import type { Supervisor } from './supervisor.js';

export interface ReconcileDeps {
  supervisor: Supervisor;
  registry: Registry;
  locks: LockBackend;
  events: EventStore;
  logger: Logger;
  clock: Clock;
}

interface Boot {
  d: ReconcileDeps;
  host: ProcessHost;
  bots: Map<string, BotController>;
  locks: Map<string, LockRow>;
  adopted: string[];
  dead: string[];
}

export async function reconcile(d: ReconcileDeps): Promise<{ adopted: string[]; dead: string[] }> {
  const b: Boot = { d, host: d.supervisor.host, bots: new Map(d.supervisor.all().map((x) => [x.id, x])), locks: new Map(), adopted: [], dead: [] };
  for (const row of d.registry.allBots()) b.bots.get(row.account)?.restore(row);
  b.locks = new Map((await d.locks.list().catch(() => [])).map((l) => [l.account, l]));
  const live = d.registry.liveInstances();
  findUnrecorded(b, live);
  // Leaders that died while no daemon ran, with workers of theirs still alive: stopped together
  // (in parallel) before any account can start again, so no old worker trades beside a new bot.
  const leftovers: Promise<void>[] = [];
  for (const inst of live) {
    if (inst.pid === null || !b.host.isAlive(inst.pid, inst.startTicks)) {
      b.dead.push(inst.account);
      const stopping = endDeadInstance(b, inst);
      if (stopping) leftovers.push(stopping);
    } else await takeLive(b, inst, inst.pid);
  }
  if (leftovers.length > 0) {
    // The daemon's timers are unref'd and nothing listens yet: hold the process open meanwhile.
    const hold = setInterval(() => undefined, 1000);
    await Promise.all(leftovers).finally(() => clearInterval(hold));
  }
  await holdRemains(b);
  // The lock backend may be down (PostgreSQL): the periodic sweep tries again.
  await d.supervisor.sweepStaleLocks().catch((err: unknown) => d.logger.warn({ err }, 'stale locks could not be swept at boot'));
  // Bots that were up when the last daemon went away and are not any more: apply their restart policy.
  for (const bot of b.bots.values()) {
    await bot.recoverDead().catch((err: unknown) => d.logger.error({ err, account: bot.id }, 'could not restart a bot found dead at boot; it stays stopped'));
  }
  if (b.adopted.length + b.dead.length > 0) d.logger.info({ adopted: b.adopted, dead: b.dead }, 'registry reconciled with /proc');
  return { adopted: b.adopted, dead: b.dead };
}

/**
 * A daemon killed between spawn() and recording the pid leaves a `spawning` row without a pid;
 * the process carries its instance id in its environment, so find it.
 */
function findUnrecorded(b: Boot, live: InstanceRow[]): void {
  const unrecorded = live.filter((i) => i.pid === null);
  if (unrecorded.length === 0) return;
  const found = b.host.leaders(new Set(unrecorded.map((i) => i.id)));
  for (const row of unrecorded) {
    const st = found.get(row.id);
    if (!st) continue;
    b.d.registry.markSpawned(row.id, st.pid, st.startTicks, st.pgid);
    Object.assign(row, { pid: st.pid, startTicks: st.startTicks, pgid: st.pgid });
  }
}

/** A dead leader: its exit is recorded, after what is left of its tree is stopped (the promise). */
function endDeadInstance(b: Boot, inst: InstanceRow): Promise<void> | null {
  const { d, host } = b;
  const pgid = inst.pgid ?? inst.pid;
  const ident = { instanceId: inst.id, pid: inst.pid, pgid, startTicks: inst.startTicks };
  const whileDown = { account: inst.account, pid: inst.pid, instanceId: inst.id };
  if (!host.lives(ident)) {
    recordExit(d, whileDown, { code: null, signal: null }, false, { whileDaemonDown: true });
    return null;
  }
  const stop = (b.bots.get(inst.account)?.account ?? unconfiguredAccount(inst.account)).stop;
  d.logger.warn({ account: inst.account, pid: inst.pid }, 'a bot died while no daemon ran, but part of its tree lives: stopping it before anything starts');
  const target = { instanceId: inst.id, pid: inst.pid ?? -1, pgid: pgid ?? -1, startTicks: inst.startTicks, exited: Promise.resolve() };
  return host.terminate(target, stop.signal, new Grace(d.clock, stop.graceMs)).then(({ forced, gone }) => {
    // Not gone after SIGKILL: its lock stays (the sweep never removes the lock of a live instance).
    if (gone) recordExit(d, whileDown, { code: null, signal: forced ? 'SIGKILL' : null }, forced, { whileDaemonDown: true });
    else d.logger.error({ account: inst.account, instanceId: inst.id }, 'part of a dead bot outlived SIGKILL: its lock stays held until it is gone');
  });
}

/**
 * A lock whose instance still has live processes that no bot took over: a tree that outlived
 * SIGKILL (before the last daemon went away, or just now). Its bot shows it (FATAL, unkillable)
 * and keeps the lock until it is gone, as a running daemon does (SPEC 14.7).
 */
async function holdRemains(b: Boot): Promise<void> {
  const unrecorded = new Set(b.d.registry.liveInstances().map((i) => i.id));
  for (const lock of await b.d.locks.list().catch(() => [])) {
    if (!b.d.locks.isOurs(lock) || lock.instanceId === null || !b.host.lives(lock)) continue;
    const bot = b.bots.get(lock.account);
    if (bot && (bot.live || bot.lockToken !== null)) continue;
    // A live leader on a live row that could not be adopted (its lock not taken): not a remnant;
    // the duplicate hunter judges it, as before.
    if (unrecorded.has(lock.instanceId) && lock.pid !== null && b.host.isAlive(lock.pid, lock.startTicks)) continue;
    const owner = bot ?? b.d.supervisor.unconfigured(lock.account);
    b.bots.set(lock.account, owner);
    // Its exit is recorded once the tree is gone, if no daemon recorded it yet (a dead leader's workers).
    owner.adoptRemains(lock, unrecorded.has(lock.instanceId));
    b.d.logger.error({ account: lock.account, instanceId: lock.instanceId }, 'part of a bot outlived SIGKILL: its lock stays held until it is gone');
  }
}

/** A live bot of the last daemon: adopted (SQLite), or ended (PostgreSQL: no bot outlives its lease). */
async function takeLive(b: Boot, inst: InstanceRow, pid: number): Promise<void> {
  const { d, host } = b;
  if (d.locks.kind === 'postgres') {
    // Bots die with their daemon in PostgreSQL mode; one that survived (no setpriv, a watchdog
    // that could not run) must not trade outside a lease: end it, the restart policy takes over.
    d.logger.warn({ account: inst.account, pid }, 'a bot outlived its daemon in postgres mode; ending it');
    const w = host.watch(pid, inst.startTicks);
    await host.terminate({ instanceId: inst.id, pid, pgid: inst.pgid ?? pid, startTicks: inst.startTicks, exited: w.exited, hurry: w.hurry }, 'SIGKILL', new Grace(d.clock, 0));
    recordExit(d, { account: inst.account, pid, instanceId: inst.id }, { code: null, signal: 'SIGKILL' }, true, { cause: 'stopped', reason: 'outlived-daemon' });
    b.dead.push(inst.account);
    return;
  }
  const bot = b.bots.get(inst.account);
  if (bot?.live) {
    // A second live instance of one account, which the lock forbids: the duplicate hunter judges it.
    d.logger.warn({ account: inst.account, pid }, 'a registered bot is alive but cannot be adopted');
    return;
  }
  // Its account left the config: adopted all the same, as `configured: false` (SPEC 14.3).
  if (!bot) d.logger.warn({ account: inst.account, pid }, 'a live bot whose account is not in the config: adopted as unconfigured (stop it to release its lock)');
  const owner = bot ?? d.supervisor.unconfigured(inst.account);
  b.bots.set(inst.account, owner);
  const lock = b.locks.get(inst.account);
  const w = host.watch(pid, inst.startTicks);
  try {
    // A lock row that went missing (the daemon died mid-way) is taken again, with the bot's key.
    await owner.adopt(
      { instanceId: inst.id, pid, pgid: inst.pgid ?? pid, startTicks: inst.startTicks, startedAt: inst.startedAt, keyId: inst.keyId, logPath: inst.logPath ?? owner.logPath, exited: w.exited, hurry: w.hurry },
      lock && (lock.instanceId === null || lock.instanceId === inst.id) ? lock : null,
    );
  } catch (err) {
    d.logger.error({ err, account: inst.account, pid }, 'could not take the lock of a live bot; the duplicate hunter judges it');
    return;
  }
  b.adopted.push(inst.account);
}
