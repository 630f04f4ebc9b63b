/**
 * A fake `ProcessHost` for the unit layer: processes that exist only here, living on a
 * ManualClock. Each account's processes behave as the test scripts them (obey the stop signal,
 * ignore it, outlive SIGKILL, crash after a while, fail to spawn), so the real BotController,
 * Supervisor and reconcile run against them without a fork, a signal or a /proc read.
 */
import { appendFileSync, statSync } from 'node:fs';
import type { Clock, ManualClock } from '../../src/clock.js';
import { Grace, type ExitStatus, type HookResult, type HookSpec, type InstanceIdentity, type NotifyEndpoint, type NotifyMessage, type ProcessHost, type SpawnSpec, type Spawned, type TerminateResult, type TerminateTarget, type TreeUsage, type Watched } from '../../src/host/host.js';
import { SpawnError } from '../../src/host/fork.js';
import { KILL_WAIT_MS } from '../../src/host/terminate.js';

/** How an account's processes behave. */
export interface Behaviour {
  /** On the stop signal: exit (after termMs), ignore it (SIGKILL ends it), or outlive even SIGKILL. */
  onTerm: 'exit' | 'ignore' | 'unkillable';
  termMs: number;
  /** Exits by itself this long after its spawn (a crash), with this status. */
  crashAfterMs?: number;
  crashStatus?: ExitStatus;
  /** The spawn fails (a missing command). */
  spawnFails?: boolean;
  /** Workers the leader starts in its group (they go with the group's signals). */
  workers?: number;
  /** The pre-stop hook takes this long and ends well (or not). */
  hookMs?: number;
  hookOk?: boolean;
  /** The tree's memory and CPU seconds, as a sample would read them. */
  usage?: TreeUsage;
}

export const OBEDIENT: Behaviour = { onTerm: 'exit', termMs: 50 };

export class FakeProc {
  alive = true;
  status: ExitStatus | null = null;
  readonly exited: Promise<ExitStatus>;
  private resolve!: (s: ExitStatus) => void;
  signals: string[] = [];

  constructor(
    readonly pid: number,
    readonly pgid: number,
    readonly startTicks: number,
    readonly instanceId: string,
    readonly account: string,
    readonly leader: boolean,
    /** Started by hand (a copy), not by a controller. */
    readonly copy = false,
  ) {
    this.exited = new Promise((r) => (this.resolve = r));
  }

  die(status: ExitStatus): void {
    if (!this.alive) return;
    this.alive = false;
    this.status = status;
    this.resolve(status);
  }
}

/** The machine's processes, shared by every daemon that runs on it in a test (a reboot keeps them). */
export class Machine {
  readonly procs: FakeProc[] = [];
  readonly spawned: SpawnSpec[] = [];
  readonly hooks: { account: string; aborted: boolean }[] = [];
  nextPid = 100_000;
  readonly behaviours = new Map<string, Behaviour>();
  readonly oomKilled = new Set<number>();
  /** Spawns that happened while a copy of the account was alive (the start gate was bypassed). */
  readonly gateBreaches: string[] = [];
}

/**
 * One daemon's view of the machine. Once `crash()`ed (the daemon SIGKILLed), it hears of no exit
 * and runs none of its timers any more: its processes live on for the next daemon to adopt.
 */
export class FakeHost implements ProcessHost {
  readonly m: Machine;
  /** The daemon's clock: the test's ManualClock, silenced once the daemon is dead. */
  readonly clock: Clock;
  private dead = false;
  private readonly sockets = new Map<string, (m: NotifyMessage) => void>();

  constructor(
    readonly base: ManualClock,
    machine?: Machine,
  ) {
    this.m = machine ?? new Machine();
    const alive = () => !this.dead;
    this.clock = {
      now: () => base.now(),
      mono: () => base.mono(),
      setTimeout: (fn, ms) => base.setTimeout(() => alive() && fn(), ms),
    };
  }

  get procs(): FakeProc[] {
    return this.m.procs;
  }

  get spawned(): SpawnSpec[] {
    return this.m.spawned;
  }

  get hooks(): { account: string; aborted: boolean }[] {
    return this.m.hooks;
  }

  get oomKilled(): Set<number> {
    return this.m.oomKilled;
  }

  get gateBreaches(): string[] {
    return this.m.gateBreaches;
  }

  /** The daemon is SIGKILLed: no exit reaches it, none of its timers fires. */
  crashDaemon(): void {
    this.dead = true;
  }

  /** An exit as this daemon hears it (never, once it is dead). */
  private heard<T>(p: Promise<T>): Promise<T> {
    return new Promise((resolve) => void p.then((v) => !this.dead && resolve(v)));
  }

  /** Scripts how this account's processes behave from their next spawn on. */
  behave(account: string, b: Partial<Behaviour>): void {
    this.m.behaviours.set(account, { ...this.behaviourOf(account), ...b });
  }

  behaviourOf(account: string): Behaviour {
    return this.m.behaviours.get(account) ?? OBEDIENT;
  }

  /** Live processes of an account (leaders, workers and copies). */
  live(account?: string): FakeProc[] {
    return this.procs.filter((p) => p.alive && (account === undefined || p.account === account));
  }

  /** A copy started by hand, with the account's marker. */
  startCopy(account: string): FakeProc {
    const pid = this.m.nextPid++;
    const p = new FakeProc(pid, pid, this.ticks(), `copy-${pid}`, account, true, true);
    this.procs.push(p);
    return p;
  }

  /** A process of a previous daemon, as the boot finds it (an instance row's). */
  startOrphan(account: string, instanceId: string, workers = 0): FakeProc {
    const pid = this.m.nextPid++;
    const p = new FakeProc(pid, pid, this.ticks(), instanceId, account, true);
    this.procs.push(p);
    for (let i = 0; i < workers; i++) this.procs.push(new FakeProc(this.m.nextPid++, pid, this.ticks(), instanceId, account, false));
    return p;
  }

  /** A bot's leader dies by itself; its workers live on (their group keeps its id). */
  crash(pid: number, status: ExitStatus = { code: 1, signal: null }): void {
    this.procs.find((p) => p.pid === pid)?.die(status);
  }

  notify(path: string, m: Partial<NotifyMessage>): void {
    this.sockets.get(path)?.({ ready: false, watchdog: false, status: null, stopping: false, ...m });
  }

  // ---- ProcessHost ---------------------------------------------------------

  spawn(spec: SpawnSpec): Promise<Spawned> {
    const account = spec.env.BOTWARDEN_ACCOUNT ?? '?';
    const instanceId = spec.env.BOTWARDEN_INSTANCE ?? '?';
    const b = this.behaviourOf(account);
    if (b.spawnFails) return Promise.reject(new SpawnError(`spawn ${spec.command[0] ?? ''} ENOENT`));
    this.spawned.push(spec);
    const copies = this.live(account).filter((p) => p.copy);
    if (copies.length > 0) this.m.gateBreaches.push(`account ${account}: spawned beside copy pid ${copies.map((p) => p.pid).join(', ')}`);
    appendFileSync(spec.logPath, '');
    const logStart = statSync(spec.logPath).size;
    const pid = this.m.nextPid++;
    const leader = new FakeProc(pid, pid, this.ticks(), instanceId, account, true);
    this.procs.push(leader);
    for (let i = 0; i < (b.workers ?? 0); i++) this.procs.push(new FakeProc(this.m.nextPid++, pid, this.ticks(), instanceId, account, false));
    if (b.crashAfterMs !== undefined) {
      const status = b.crashStatus ?? { code: 1, signal: null };
      this.base.setTimeout(() => leader.die(status), b.crashAfterMs);
    }
    return Promise.resolve({ pid, pgid: pid, startTicks: leader.startTicks, exited: this.heard(leader.exited), logStart });
  }

  watch(pid: number, startTicks: number | null): Watched {
    const p = this.procs.find((q) => q.pid === pid && (startTicks === null || q.startTicks === startTicks));
    // Not our child: its code went to its new parent.
    return { exited: this.heard(p ? p.exited.then(() => ({ code: null, signal: null })) : Promise.resolve({ code: null, signal: null })), hurry: () => undefined };
  }

  async terminate(t: TerminateTarget, signal: NodeJS.Signals, grace: Grace): Promise<TerminateResult> {
    const tree = () => this.procs.filter((p) => p.alive && (p.instanceId === t.instanceId || (t.pgid > 1 && p.pgid === t.pgid)));
    const members = tree();
    if (members.length === 0) return { forced: false, gone: true };
    const b = this.behaviourOf(members[0]!.account);
    for (const p of members) {
      p.signals.push(signal);
      if (b.onTerm === 'exit') this.base.setTimeout(() => p.die({ code: null, signal }), b.termMs);
    }
    while (tree().length > 0 && !grace.over) await grace.sleep(Math.min(10, Math.max(1, grace.remaining())));
    if (tree().length === 0) return { forced: false, gone: true };
    for (const p of tree()) {
      p.signals.push('SIGKILL');
      if (b.onTerm !== 'unkillable') p.die({ code: null, signal: 'SIGKILL' });
    }
    if (tree().length > 0) await new Grace(this.clock, KILL_WAIT_MS).sleep(KILL_WAIT_MS);
    return { forced: true, gone: tree().length === 0 };
  }

  lives(i: InstanceIdentity): boolean {
    return this.procs.some((p) => p.alive && ((i.pid !== null && p.pid === i.pid) || (i.instanceId !== null && p.instanceId === i.instanceId) || (i.pgid != null && i.pgid > 1 && p.pgid === i.pgid)));
  }

  isAlive(pid: number, startTicks: number | null): boolean {
    return this.procs.some((p) => p.alive && p.pid === pid && (startTicks === null || p.startTicks === startTicks));
  }

  leaders(ids: Set<string>): Map<string, { pid: number; pgid: number; startTicks: number }> {
    const out = new Map<string, { pid: number; pgid: number; startTicks: number }>();
    for (const p of this.procs) if (p.alive && p.leader && ids.has(p.instanceId)) out.set(p.instanceId, { pid: p.pid, pgid: p.pgid, startTicks: p.startTicks });
    return out;
  }

  async runHook(_hook: HookSpec, o: { env: Record<string, string>; abort: Promise<void> }): Promise<HookResult> {
    const account = o.env.BOTWARDEN_ACCOUNT ?? '?';
    const b = this.behaviourOf(account);
    const rec = { account, aborted: false };
    this.hooks.push(rec);
    const t0 = this.clock.mono();
    const done = new Promise<'done'>((r) => this.clock.setTimeout(() => r('done'), b.hookMs ?? 0));
    const first = await Promise.race([done, o.abort.then(() => 'escalated' as const)]);
    if (first === 'escalated') rec.aborted = true;
    const ok = first === 'done' && b.hookOk !== false;
    return { ok, ms: this.clock.mono() - t0, ...(ok ? {} : { detail: first === 'done' ? 'code 1' : first }) };
  }

  killedByOom(pid: number): boolean {
    return this.oomKilled.has(pid);
  }

  usage(tree: { instanceId: string }): TreeUsage {
    const p = this.procs.find((q) => q.instanceId === tree.instanceId);
    return (p && this.behaviourOf(p.account).usage) ?? { rssBytes: 10 * 1024 * 1024, cpuSeconds: 0 };
  }

  notifySocket(path: string, onMessage: (m: NotifyMessage) => void): NotifyEndpoint {
    this.sockets.set(path, onMessage);
    return { path, close: () => this.sockets.delete(path) };
  }

  private ticks(): number {
    return Math.floor(this.base.mono() / 10);
  }
}
