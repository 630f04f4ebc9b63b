/**
 * Boot: make the registry true again before serving. Every instance the last
 * daemon left "live" is checked against /proc (pid + start time, zombies are
 * dead): alive => adopted (same pid, running, lock kept), also when its account
 * left the config (then `configured: false`); leader dead but some of its tree
 * alive => that tree is stopped (signal, grace, SIGKILL) first; dead => marked
 * exited, and its restart policy applied. A lock no adopted bot holds is removed
 * only when no process of its instance lives (SPEC 14.4).
 */
import type { Logger } from 'pino';
import type { LockBackend } from '../db/locks.js';
import type { Registry } from '../db/registry.js';
import type { EventStore } from '../events/store.js';
import { instanceLeaders, isAlive, openStatHandle, type ProcStat, type StatHandle } from '../proc/procfs.js';
import { realClock, type Clock, type TimerHandle } from '../clock.js';
import type { ExitStatus } from './spawn.js';
import { terminate } from './terminate.js';
import { instanceLives } from './lease.js';
import { unconfiguredAccount } from './unconfigured.js';
import type { Supervisor } from './supervisor.js';

export interface ReconcileDeps {
  supervisor: Supervisor;
  registry: Registry;
  locks: LockBackend;
  events: EventStore;
  logger: Logger;
  exits: ExitPoller;
}

const EXIT_POLL_MS = 250;
/** While a stop of an adopted bot is under way, its exit is looked for this often. */
const HURRY_POLL_MS = 10;

export async function reconcile(d: ReconcileDeps): Promise<{ adopted: string[]; dead: string[] }> {
  const adopted: string[] = [];
  const dead: string[] = [];
  const bots = new Map(d.supervisor.all().map((b) => [b.id, b]));
  for (const row of d.registry.allBots()) bots.get(row.account)?.restore(row);
  const locks = new Map((await d.locks.list().catch(() => [])).map((l) => [l.account, l]));
  const now = new Date().toISOString();

  const live = d.registry.liveInstances();
  // A daemon killed between spawn() and recording the pid leaves a `spawning` row
  // without a pid; the process carries its instance id in its environment, so find it.
  const unrecorded = live.filter((i) => i.pid === null);
  const found = unrecorded.length > 0 ? instanceLeaders(new Set(unrecorded.map((i) => i.id))) : new Map<string, ProcStat>();
  for (const row of unrecorded) {
    const st = found.get(row.id);
    if (st) {
      d.registry.markSpawned(row.id, st.pid, st.startTicks, st.pgid);
      Object.assign(row, { pid: st.pid, startTicks: st.startTicks, pgid: st.pgid });
    }
  }

  // Leaders that died while no daemon ran, with workers of theirs still alive: stopped together
  // (in parallel) before any account can start again, so no old worker trades beside a new bot.
  const leftovers: Promise<void>[] = [];
  for (const inst of live) {
    const bot = bots.get(inst.account);
    const alive = inst.pid !== null && isAlive(inst.pid, inst.startTicks);
    if (!alive || inst.pid === null) {
      dead.push(inst.account);
      const ident = { instanceId: inst.id, pid: inst.pid, pgid: inst.pgid ?? inst.pid, startTicks: inst.startTicks };
      if (!instanceLives(ident)) {
        recordDeadExit(d, inst, now, false);
        continue;
      }
      const stop = (bot?.account ?? unconfiguredAccount(inst.account)).stop;
      d.logger.warn({ account: inst.account, pid: inst.pid }, 'a bot died while no daemon ran, but part of its tree lives: stopping it before anything starts');
      leftovers.push(
        terminate({ instanceId: inst.id, pid: inst.pid ?? -1, pgid: ident.pgid ?? -1, startTicks: inst.startTicks, exited: Promise.resolve() }, stop.signal, stop.graceMs).then(({ forced, gone }) => {
          // Not gone after SIGKILL: its lock stays (the sweep never removes the lock of a live instance).
          if (gone) recordDeadExit(d, inst, new Date().toISOString(), forced);
          else d.logger.error({ account: inst.account, instanceId: inst.id }, 'part of a dead bot outlived SIGKILL: its lock stays held until it is gone');
        }),
      );
      continue;
    }
    if (d.locks.kind === 'postgres') {
      // Bots die with their daemon in PostgreSQL mode; one that survived (no setpriv, a watchdog
      // that could not run) must not trade outside a lease: end it, the restart policy takes over.
      d.logger.warn({ account: inst.account, pid: inst.pid }, 'a bot outlived its daemon in postgres mode; ending it');
      await terminate({ instanceId: inst.id, pid: inst.pid, pgid: inst.pgid ?? inst.pid, startTicks: inst.startTicks, exited: d.exits.watch(inst.pid, inst.startTicks) }, 'SIGKILL', 0);
      d.registry.markExited(inst.id, { code: null, signal: 'SIGKILL', forced: true, endedAt: now });
      dead.push(inst.account);
      continue;
    }
    if (bot?.live) {
      // A second live instance of one account, which the lock forbids: the duplicate hunter judges it.
      d.logger.warn({ account: inst.account, pid: inst.pid }, 'a registered bot is alive but cannot be adopted');
      continue;
    }
    if (!bot) {
      // Its account left the config: adopted all the same, as `configured: false` (SPEC 14.3).
      d.logger.warn({ account: inst.account, pid: inst.pid }, 'a live bot whose account is not in the config: adopted as unconfigured (stop it to release its lock)');
    }
    const owner = bot ?? d.supervisor.unconfigured(inst.account);
    bots.set(inst.account, owner);
    const lock = locks.get(inst.account);
    const pid = inst.pid;
    try {
      // A lock row that went missing (the daemon died mid-way) is taken again, with the bot's key.
      await owner.adopt(
        {
          instanceId: inst.id,
          pid,
          pgid: inst.pgid ?? pid,
          startTicks: inst.startTicks,
          startedAt: inst.startedAt,
          keyId: inst.keyId,
          logPath: inst.logPath ?? owner.logPath,
          exited: d.exits.watch(pid, inst.startTicks),
          hurry: () => d.exits.hurry(pid),
        },
        lock && (lock.instanceId === null || lock.instanceId === inst.id) ? lock : null,
      );
    } catch (err) {
      d.logger.error({ err, account: inst.account, pid }, 'could not take the lock of a live bot; the duplicate hunter judges it');
      continue;
    }
    adopted.push(inst.account);
  }

  if (leftovers.length > 0) {
    // The daemon's timers are unref'd and nothing listens yet: hold the process open meanwhile.
    const hold = setInterval(() => undefined, 1000);
    await Promise.all(leftovers).finally(() => clearInterval(hold));
  }

  for (const lock of await d.locks.list().catch(() => [])) {
    const bot = bots.get(lock.account);
    if (bot?.live && bot.lockToken === lock.token) continue;
    if (!d.locks.isOurs(lock)) continue; // another daemon's lease (PostgreSQL): never ours to remove
    if (instanceLives(lock)) {
      // SPEC 14.4: a lock is released only when no process of its instance lives.
      d.logger.warn({ account: lock.account, pid: lock.pid, instanceId: lock.instanceId }, 'a lock whose instance still has live processes is kept');
      continue;
    }
    await d.locks.release(lock.account, lock.token);
    d.events.emit('lock.stale_removed', { account: lock.account, holder: lock.holder, pid: lock.pid, token: lock.token });
  }

  // Bots that were up when the last daemon went away and are not any more: apply their restart policy.
  for (const bot of bots.values()) {
    await bot.recoverDead().catch((err: unknown) => d.logger.error({ err, account: bot.id }, 'could not restart a bot found dead at boot; it stays stopped'));
  }
  if (adopted.length + dead.length > 0) d.logger.info({ adopted, dead }, 'registry reconciled with /proc');
  return { adopted, dead };
}

function recordDeadExit(d: ReconcileDeps, inst: { id: string; account: string; pid: number | null }, endedAt: string, forced: boolean): void {
  const signal = forced ? 'SIGKILL' : null;
  d.events.emit('bot.exited', { account: inst.account, pid: inst.pid, instanceId: inst.id, code: null, signal, forced, whileDaemonDown: true }, () =>
    d.registry.markExited(inst.id, { code: null, signal, forced, endedAt }),
  );
}

/**
 * An adopted bot is not our child: its exit is noticed by polling its identity.
 * One timer per daemon serves every adopted bot (50 bots: 200 small /proc reads a second).
 */
export class ExitPoller {
  private readonly watched = new Map<number, { handle: StatHandle | null; startTicks: number | null; resolve: (s: ExitStatus) => void }>();
  private timer: TimerHandle | null = null;
  /** Bots being stopped: polled every HURRY_POLL_MS, so a stop does not wait out the 250 ms poll. */
  private readonly urgent = new Set<number>();
  private fastTimer: TimerHandle | null = null;
  private closed = false;

  constructor(
    private readonly clock: Clock = realClock,
    private readonly intervalMs = EXIT_POLL_MS,
    /** Exits were found (a poll may find many): their records can share a commit. */
    private readonly onExits: () => void = () => undefined,
  ) {}

  watch(pid: number, startTicks: number | null): Promise<ExitStatus> {
    return new Promise((resolve) => {
      // Closed with its daemon: the bot is the next daemon's to adopt, nothing is watched any more.
      if (this.closed) return;
      // A held-open /proc/<pid>/stat where possible: one pread per check, immune to pid reuse.
      const handle = openStatHandle(pid, startTicks);
      this.watched.set(pid, { handle, startTicks, resolve });
      this.schedule();
    });
  }

  /** A stop of this bot is under way: look for its exit often until it is gone. */
  hurry(pid: number): void {
    if (!this.watched.has(pid)) return;
    this.urgent.add(pid);
    this.scheduleFast();
  }

  close(): void {
    this.closed = true;
    this.timer?.cancel();
    this.timer = null;
    this.fastTimer?.cancel();
    this.fastTimer = null;
    for (const w of this.watched.values()) w.handle?.close();
    this.watched.clear();
    this.urgent.clear();
  }

  /** Resolves the watch if the process is gone; true when it was. */
  private check(pid: number): boolean {
    const w = this.watched.get(pid);
    if (!w) return true;
    if (w.handle ? w.handle.alive() : isAlive(pid, w.startTicks)) return false;
    w.handle?.close();
    this.watched.delete(pid);
    this.onExits();
    // Not our child: its exit code went to its new parent, so it is unknown here.
    w.resolve({ code: null, signal: null });
    return true;
  }

  private pollAll(): void {
    for (const pid of [...this.watched.keys()]) if (this.check(pid)) this.urgent.delete(pid);
    this.timer = null;
    this.schedule();
  }

  private pollUrgent(): void {
    for (const pid of [...this.urgent]) if (this.check(pid)) this.urgent.delete(pid);
    this.fastTimer = null;
    this.scheduleFast();
  }

  private schedule(): void {
    if (this.timer || this.watched.size === 0) return;
    this.timer = this.clock.setTimeout(() => this.pollAll(), this.intervalMs);
  }

  private scheduleFast(): void {
    if (this.fastTimer || this.urgent.size === 0) return;
    this.fastTimer = this.clock.setTimeout(() => this.pollUrgent(), HURRY_POLL_MS);
  }
}
