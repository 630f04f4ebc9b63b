/**
 * One account's bot: the operations, their queue and the one `changeState`.
 * The restart policy (policy.ts), the process's birth and death (instance.ts)
 * and the lock (lease.ts) live in their own modules. Operations on one
 * account run one at a time; different accounts never wait on each other.
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { brokerOf, type Account } from '../config/schema.js';
import type { LockRow } from '../db/locks.js';
import type { BotRow, ExitCause, LastExit } from '../db/registry.js';
import { Errors, isBotwardenError, type BotwardenError } from '../errors.js';
import { endInstance, launchInstance, recordExit, type LiveInstance } from './instance.js';
import { AccountLease } from './lease.js';
import { BotWatch } from './bot-watch.js';
import type { LivenessCheck } from './liveness.js';
import { diagnose, type Diagnosis } from './diagnosis.js';
import { REJECTED_UNTIL } from '../db/locks.js';
import { BotOutput } from './output.js';
import { afterExit, backoffDelay } from './policy.js';
import { Grace, type ExitStatus } from '../host/host.js';
import { BotMachine } from './machine.js';
import { ACTIVE_STATES, type BotState, type FatalReason, type StopReason } from './states.js';
import type { BotDeps, BotView } from './types.js';

export type { LiveInstance } from './instance.js';
export type { BotDeps, BotView } from './types.js';

/** How often a tree that outlived SIGKILL is looked at again. */
const REMAINS_POLL_MS = 1000;

/** A process group the watchdog (PostgreSQL mode) must kill if the daemon freezes. */
export interface ProcessTree {
  pgid: number;
  startTicks: number | null;
}

export class BotController extends BotMachine {
  private proc: LiveInstance | null = null;
  private launching: string | null = null;
  /** The process from its spawn (before its lock records it) until its whole tree is gone. */
  private spawned: ProcessTree | null = null;
  /** A tree that outlived SIGKILL: the lock stays until it is gone (SPEC 14.7). */
  private remains: LiveInstance | null = null;
  /** The grace of the stop under way: a later, harder stop cuts it short (SPEC 14.6). */
  private grace: Grace | null = null;
  /** Automatic starts refused in a row by the start gate (a copy runs, `duplicates: report`). */
  private gateRefusals = 0;
  /** Liveness, limits, NOTIFY_SOCKET and the schedule of the running instance (SPEC 16). */
  private watcher: BotWatch | null = null;
  /** Restarts for being unresponsive or over a limit since the last requested start. */
  private healthRestarts = 0;
  /** The last nonce-error diagnosis, shown in the bot's row (SPEC 17). */
  private lastDiagnosis: { cause: string; at: string; evidence: string } | null = null;
  /** CPU seconds of the instances watched before the current one. */
  private cpuPast = 0;
  /** The pre-stop hook under way: a harder stop cuts it short. */
  private hookAbort: (() => void) | null = null;
  /** A grace asked for by a stop that came during the pre-stop hook (applied to the stop that follows). */
  private pendingGraceMs: number | null = null;
  /** False for a bot whose account left the config while it ran (SPEC 14.3): stoppable, never restarted. */
  configured = true;
  private readonly lease: AccountLease;
  private restarts = 0;
  private quickFailures = 0;
  private lastExit: LastExit | null = null;
  private readonly output: BotOutput;
  /** A remnant adopted at boot whose exit no daemon recorded: recorded once its tree is gone. */
  private unrecordedExit: string | null = null;
  /** Persisted state said the bot was meant to be up when the last daemon went away. */
  private wasActive = false;

  constructor(
    public account: Account,
    private readonly deps: BotDeps,
  ) {
    super(account.id, deps.logger.child({ account: account.id }), deps.events, deps.registry, deps.clock);
    this.lease = new AccountLease(deps, () => this.account);
    this.output = new BotOutput(this, deps, this.log, deps.clock);
  }

  /** The nonce breaker tripped (OutputOwner): the bot is stopped and, by the diagnosis, its key rotated. */
  tripped(): void {
    const inst = this.proc;
    if (inst) this.serialize(() => this.rotate(inst)).catch((err: unknown) => this.log.error({ err }, 'key rotation failed'));
  }

  get live(): LiveInstance | null { return this.proc; }
  /** The instance being spawned right now (its process may exist before `live` is set). */
  get launchingInstance(): string | null { return this.launching; }
  get lockToken(): number | null { return this.lease.token; }
  /** The key leased with the lock, or null. */
  get keyId(): string | null { return this.lease.keyId; }
  /** The bot's process tree from its spawn until it is gone, also while a stop or fence runs. */
  get tree(): ProcessTree | null {
    const p = this.proc ?? this.remains;
    return p ? { pgid: p.pgid, startTicks: p.startTicks } : this.spawned;
  }
  /** A tree that outlived SIGKILL and still holds the account (SPEC 14.7). */
  get unkillable(): { pid: number; instanceId: string } | null {
    const r = this.remains;
    return r ? { pid: r.pid, instanceId: r.instanceId } : null;
  }
  get logPath(): string { return path.join(this.deps.logsDir, `${this.account.id}.log`); }

  protected record(state: BotState): BotRow {
    return { account: this.id, state, instanceId: this.proc?.instanceId ?? null, restarts: this.restarts, keyId: this.lease.keyId, lastExit: this.lastExit };
  }

  view(): BotView {
    const { id, name, broker, brokerUsername } = this.account;
    const p = this.proc;
    const nonceErrors = this.output.nonceErrors();
    const w = this.watcher;
    w?.refresh();
    return { account: id, name, broker, brokerUsername, configured: this.configured, state: this.current, pid: p?.pid ?? null, instanceId: p?.instanceId ?? null, startedAt: p?.startedAt ?? null,
      restarts: this.restarts, keyId: this.lease.keyId, lastExit: this.lastExit, nonceErrors, lock: this.lease.facts(p ?? this.remains),
      status: w?.status ?? null, rssBytes: w?.rssBytes ?? null, cpuPercent: w?.cpuPercent === null || w === null ? null : Math.round(w.cpuPercent * 10) / 10,
      diagnosis: this.lastDiagnosis };
  }

  /** CPU seconds used by this account's bots' trees since the daemon started (the metric's counter). */
  get cpuSeconds(): number {
    return this.cpuPast + (this.watcher?.cpuSeconds ?? 0);
  }

  // ---- boot --------------------------------------------------------------

  /** Takes the counters and last exit persisted by the previous daemon. STOPPED -> FATAL when it was fatal. */
  restore(row: BotRow): void {
    this.restarts = row.restarts;
    this.lastExit = row.lastExit;
    this.wasActive = row.state === 'starting' || row.state === 'running' || row.state === 'backoff';
    // The live state is rebuilt from /proc; a fatal bot stays fatal (no new event: nothing happened).
    if (row.state === 'fatal') this.changeState('fatal', { restored: true }, false);
  }

  /** Takes over a live process found at boot (not our child). STOPPED -> RUNNING. */
  async adopt(inst: LiveInstance, lock: LockRow | null): Promise<void> {
    if (lock) this.lease.keep(lock, inst.keyId);
    else await this.lease.acquire({ nowMs: this.deps.clock.now(), reclaim: { keyId: inst.keyId } });
    await this.lease.attach({ instanceId: inst.instanceId, pid: inst.pid, startTicks: inst.startTicks });
    this.proc = inst;
    this.output.follow(inst.logPath);
    this.startWatch(this.newWatch(), inst, true);
    this.changeState('running', { pid: inst.pid, instanceId: inst.instanceId, adopted: true });
    this.deps.events.emit('bot.adopted', { account: this.id, pid: inst.pid, instanceId: inst.instanceId });
    if (this.account.liveness?.watchdogMs !== undefined) {
      this.log.info('the watchdog of an adopted bot counts from its first WATCHDOG=1 to this daemon (a client that connected its socket once reaches only the last daemon until it restarts)');
    }
    this.watch(inst, false);
  }

  /**
   * Boot: a tree of this account that outlived SIGKILL (under the last daemon, or just now at this
   * boot) still holds the lock: FATAL (unkillable), shown, its lock kept until the tree is gone.
   */
  adoptRemains(lock: LockRow, unrecorded: boolean): void {
    const inst: LiveInstance = {
      instanceId: lock.instanceId ?? '',
      pid: lock.pid ?? -1,
      pgid: lock.pid ?? -1,
      startTicks: lock.startTicks,
      startedAt: lock.createdAt,
      keyId: null,
      logPath: this.logPath,
      exited: new Promise<ExitStatus>(() => undefined),
    };
    this.lease.keep(lock, null);
    this.remains = inst;
    if (unrecorded) this.unrecordedExit = inst.instanceId;
    if (this.current !== 'fatal') this.changeState('fatal', { reason: 'unkillable' satisfies FatalReason, pid: inst.pid, instanceId: inst.instanceId });
    this.watchRemains(inst);
  }

  /** Boot: up when the last daemon went away, dead now. Unknown exit, so a failure. STOPPED -> BACKOFF or stays. */
  async recoverDead(): Promise<void> {
    if (!this.wasActive || this.proc || this.remains) return;
    this.wasActive = false;
    // Ended while no daemon ran: not our child, so its code and signal are unknown.
    this.lastExit = { code: null, signal: null, at: new Date(this.deps.clock.now()).toISOString(), forced: false, cause: 'exit' };
    if (this.account.restart.policy === 'never' || this.current !== 'stopped') return this.persist(this.current);
    await this.serialize(async () => {
      await this.lease.acquire({ nowMs: this.deps.clock.now() });
      this.enterBackoff(1);
    });
  }

  // ---- operations ----------------------------------------------------------

  /** Start: refused at once when the account is taken, else queued behind any running operation. */
  start(): Promise<BotView> {
    const taken = this.taken();
    if (taken) return Promise.reject(taken);
    return this.serialize(async () => {
      this.assertStartable();
      await this.freshStart();
      return this.view();
    });
  }

  /**
   * A stop with a smaller `graceMs` than the stop under way, or `force` (grace 0), cuts that stop
   * short at once; every pending stop answers once the tree is gone (SPEC 14.6).
   */
  stop(opts: { reason?: StopReason; graceMs?: number; force?: boolean } = {}): Promise<BotView> {
    const graceMs = opts.force ? 0 : opts.graceMs;
    this.escalate(graceMs);
    return this.serialize(async () => {
      await this.stopNow(opts.reason ?? 'request', graceMs);
      return this.view();
    });
  }

  restart(opts: { graceMs?: number } = {}): Promise<BotView> {
    const refused = (this.current === 'stopping' ? this.taken() : null) ?? (this.configured ? null : Errors.unknownAccount(this.id));
    if (refused) return Promise.reject(refused);
    return this.serialize(async () => {
      await this.stopNow('request', opts.graceMs);
      await this.freshStart();
      return this.view();
    });
  }

  /**
   * The lease was lost (could not be renewed in time): stop at once, then SIGKILL; no restart here
   * until a new grant. RUNNING/STARTING -> STOPPING -> FATAL (lease-lost); BACKOFF -> FATAL.
   */
  fence(token: number, urgent = false): Promise<void> {
    // `urgent`: the lease may already be another daemon's (a wake past its deadline, or found gone):
    // SIGKILL now. Else a stop under way with a longer grace than the fence budget allows is cut to
    // the account's own.
    const graceMs = urgent ? 0 : this.account.stop.graceMs;
    if (this.lease.token === token) this.escalate(graceMs);
    return this.serialize(async () => {
      if (this.lease.token !== token) return;
      this.lease.forget();
      this.cancelTimer();
      const inst = this.proc;
      let gone = true;
      if (inst && (this.current === 'running' || this.current === 'starting')) {
        this.changeState('stopping', { reason: 'fence', pid: inst.pid, actor: 'system:fence', ...(urgent ? { urgent } : {}) });
        gone = await this.end(inst, graceMs, { cause: 'stopped', reason: 'fence' });
      }
      if (this.current !== 'fatal') this.changeState('fatal', { reason: (gone ? 'lease-lost' : 'unkillable') satisfies FatalReason });
      if (!gone && inst) this.watchRemains(inst);
    });
  }

  /** For leave-running shutdown: forget timers and tailing, keep the process and its lock. */
  detach(): void {
    this.cancelTimer();
    this.output.unfollow();
  }

  updateAccount(account: Account): void {
    this.account = account;
    this.output.configure(account.nonceErrors);
  }

  // ---- key rotation ------------------------------------------------------

  /** The circuit breaker: RUNNING/STARTING -> STOPPING -> STARTING (next key) or FATAL. */
  private async rotate(inst: LiveInstance): Promise<void> {
    if (this.proc !== inst || (this.current !== 'running' && this.current !== 'starting')) return;
    const from = this.lease.keyId;
    // SPEC 17: the cause first (the clock, a shared key, a rejected key), then the action that fits.
    const d = await this.diagnoseTrip(inst, from);
    this.deps.events.emit('nonce.diagnosis', { account: this.id, keyId: from, cause: d.cause, evidence: d.evidence, actor: 'system:breaker' });
    this.lastDiagnosis = { cause: d.cause, at: new Date(this.deps.clock.now()).toISOString(), evidence: d.evidence };
    this.log.warn({ cause: d.cause, evidence: d.evidence }, 'nonce errors diagnosed');
    if (this.proc !== inst || (this.current !== 'running' && this.current !== 'starting')) return;
    this.cancelTimer();
    if (d.cause === 'clock') {
      // No key can help, and every failed call counts toward a lockout: stop, keys untouched.
      this.changeState('stopping', { reason: 'clock' satisfies StopReason, pid: inst.pid, keyId: from, actor: 'system:breaker' });
      if (!(await this.end(inst, this.account.stop.graceMs, { cause: 'stopped', reason: 'clock' }))) return this.holdUnkillable(inst);
      await this.lease.release();
      this.output.resetBreaker();
      // STOPPING -> FATAL (clock)
      this.changeState('fatal', { reason: 'clock' satisfies FatalReason, keyId: from, message: d.evidence });
      return;
    }
    this.changeState('stopping', { reason: 'rotation' satisfies StopReason, pid: inst.pid, keyId: from, cause: d.cause, actor: 'system:breaker' });
    await this.prestop('rotation');
    if (!(await this.end(inst, this.account.stop.graceMs, { cause: 'stopped', reason: 'rotation' }))) return this.holdUnkillable(inst);
    const now = this.deps.clock.now();
    // A rejected key rests until an operator enables it; any other, its cooldown.
    const rejected = d.cause === 'key-rejected';
    const coolUntil = rejected ? REJECTED_UNTIL : now + this.account.nonceErrors.cooldownMs;
    const to = await this.lease.rotateKey(coolUntil, now);
    if (from !== null) {
      this.deps.events.emit('key.rotated', { account: this.id, from, to, cause: d.cause, ...(rejected ? { rejected: true } : { cooldownUntil: new Date(coolUntil).toISOString() }), actor: 'system:breaker' });
    }
    this.output.resetBreaker();
    if (to === null) {
      await this.lease.release();
      this.changeState('fatal', { reason: (from === null ? 'nonce-errors' : 'keys-exhausted') satisfies FatalReason, keyId: from });
      return;
    }
    this.restarts++;
    await this.launch(true);
  }

  /** The facts of a trip, gathered (the clock measured now if it is stale), and judged. */
  private async diagnoseTrip(inst: LiveInstance, keyId: string | null): Promise<Diagnosis> {
    const facts = this.deps.nonceFacts;
    const broker = brokerOf(this.account);
    const offset = facts && broker ? await facts.offset(broker).catch(() => undefined) : undefined;
    const holders = facts && keyId !== null ? facts.holders(keyId, inst.instanceId) : [];
    const d = diagnose({
      account: this.id,
      keyId,
      exchange: broker,
      errors: this.output.recentErrors(),
      offsetMs: offset?.offsetMs ?? null,
      offsetError: offset ? offset.error : broker ? 'no measurement' : 'the account names no broker',
      maxOffsetMs: facts?.maxOffsetMs() ?? 500,
      holders,
    });
    // Holders are duplicates of this account: the hunter ends or reports them by its policy.
    if (d.cause === 'shared-key') await facts?.duplicatesFound().catch(() => undefined);
    return d;
  }

  // ---- internals -------------------------------------------------------

  private assertStartable(): void {
    const taken = this.taken();
    if (taken) throw taken;
  }

  /** ACCOUNT_LOCKED while the bot is up, on its way, or its tree outlived SIGKILL; else null. */
  private taken(): BotwardenError | null {
    if (!ACTIVE_STATES.has(this.current) && !this.remains) return null;
    return Errors.accountLocked(this.account.name, this.account.brokerUsername, this.lease.facts(this.proc ?? this.remains));
  }

  /** A stop asked for while another runs: a shorter grace (or force, 0) cuts the running one short. */
  private escalate(graceMs: number | undefined): void {
    if (graceMs === undefined) return;
    if (this.grace?.shorten(graceMs)) this.log.warn({ graceMs }, 'stop escalated: the stop under way is cut short');
    else if (this.hookAbort) {
      // During the pre-stop hook: the hook is cut short, and the stop that follows gets this grace.
      this.pendingGraceMs = Math.min(this.pendingGraceMs ?? Infinity, graceMs);
      this.hookAbort();
    }
  }

  private async freshStart(): Promise<void> {
    if (!this.configured) throw Errors.unknownAccount(this.id);
    this.assertStartable();
    // The start gate of a requested start runs before the lock is taken: a refusal changes nothing.
    await this.deps.gate.clearBeforeStart(this.account);
    this.assertStartable();
    await this.lease.acquire({ nowMs: this.deps.clock.now() });
    this.output.resetBreaker();
    this.restarts = 0;
    this.quickFailures = 0;
    this.gateRefusals = 0;
    this.healthRestarts = 0;
    await this.launch(false);
  }

  /**
   * SPEC 14.5: an automatic start (restart policy, rotation, recovery) passes the same start gate
   * as a requested one. A copy alive with `duplicates: report`: nothing is spawned, the bot waits
   * in BACKOFF (lock kept) and goes FATAL (`duplicate`) after maxRestarts refusals. False: refused.
   */
  private async passGate(): Promise<boolean> {
    try {
      await this.deps.gate.clearBeforeStart(this.account);
      return true;
    } catch (err) {
      if (!isBotwardenError(err) || err.code !== 'DUPLICATE_RUNNING') throw err;
      this.gateRefusals++;
      const pids = err.details.pids;
      if (this.gateRefusals > this.account.restart.maxRestarts) {
        await this.lease.release();
        // BACKOFF/STOPPING -> FATAL: a copy kept running through every try.
        this.changeState('fatal', { reason: 'duplicate' satisfies FatalReason, pids, message: err.message });
      } else this.enterBackoff(this.gateRefusals, { reason: 'duplicate', pids });
      return false;
    }
  }

  /**
   * Spawns a new instance under the lock we hold. STOPPED/FATAL/BACKOFF/STOPPING -> STARTING.
   * `gated`: an automatic start, which passes the start gate here (a requested one passed it before
   * taking the lock).
   */
  private async launch(gated: boolean): Promise<void> {
    if (gated && !this.configured) {
      await this.lease.release();
      this.changeState('stopped', { reason: 'unconfigured' });
      return;
    }
    if (gated && !(await this.passGate())) return;
    const a = this.account;
    const keyId = this.lease.keyId;
    // Made before the spawn: a NOTIFY_SOCKET must exist for the bot's first READY=1.
    const watch = this.newWatch();
    if (watch.notifyError) this.log.error({ err: watch.notifyError }, 'NOTIFY_SOCKET could not be made: the bot runs on startMs, without its watchdog');
    const env = { ...this.deps.env.base(a.id), ...a.env, ...watch.env, ...(keyId !== null ? this.deps.keys.envFor(a, keyId) : {}) };
    let inst: LiveInstance;
    const left: { tree: LiveInstance | null } = { tree: null };
    // Known before the process exists: a scan that runs while the spawn is recorded (a PostgreSQL
    // round trip) must not take our own new bot for a copy.
    const instanceId = randomUUID();
    this.launching = instanceId;
    try {
      inst = await launchInstance(this.deps, this.lease, { instanceId, account: a, keyId, logPath: this.logPath, env, onSpawned: (p) => {
        this.spawned = { pgid: p.pgid, startTicks: p.startTicks };
        this.deps.listener.spawned(this.id);
      }, outlived: (p) => (left.tree = p) });
    } catch (err) {
      this.launching = null;
      watch.stop();
      const message = (err as Error).message;
      const outlived = left.tree;
      if (outlived) {
        // Spawned, not recorded on the lock, and it outlived SIGKILL: the lock stays (SPEC 14.7).
        this.log.error({ err }, 'the lock could not record the new process, which outlived SIGKILL');
        this.remains = outlived;
        this.changeState('fatal', { reason: 'unkillable' satisfies FatalReason, pid: outlived.pid, instanceId: outlived.instanceId, message });
        this.watchRemains(outlived);
        throw err;
      }
      this.spawned = null;
      await this.lease.release();
      const leaseLost = isBotwardenError(err) && err.code === 'LOCK_BACKEND_UNAVAILABLE';
      if (!leaseLost) this.lastExit = { code: null, signal: null, at: new Date(this.deps.clock.now()).toISOString(), forced: false, cause: 'spawn-failed' };
      // -> FATAL: the command could not be spawned (or its process recorded), or the lease is gone.
      this.changeState('fatal', { reason: (leaseLost ? 'lease-lost' : 'spawn-failed') satisfies FatalReason, message });
      throw leaseLost || (isBotwardenError(err) && err.code === 'STORAGE_FULL') ? err : Errors.spawnFailed(a.id, message, err);
    }
    this.proc = inst;
    this.launching = null;
    this.output.follow(inst.logPath, inst.logStart);
    this.startWatch(watch, inst);
    this.changeState('starting', { pid: inst.pid, instanceId: inst.instanceId });
    // With notify, READY=1 makes it `running` (it may have come already, during the attach).
    this.watch(inst, !watch.readyByNotify);
    if (watch.readySeen) this.onReady(watch);
  }

  // ---- liveness, limits, schedule (SPEC 16) -------------------------------

  private newWatch(): BotWatch {
    const w: BotWatch = new BotWatch(this.account, this.deps.clock, path.dirname(this.deps.logsDir), this.deps.host, {
      lastOutputAt: () => this.output.lastLineAt,
      unresponsive: (check, lastSeen) => this.onUnresponsive(w, check, lastSeen),
      limitExceeded: (limit, value) => this.onLimit(w, limit, value),
      ready: () => this.onReady(w),
      scheduled: () => this.onScheduled(w),
    });
    return w;
  }

  private startWatch(w: BotWatch, inst: LiveInstance, adopted = false): void {
    this.stopWatch();
    this.watcher = w;
    w.start({ instanceId: inst.instanceId, pgid: inst.pgid, startTicks: inst.startTicks }, this.deps.clock.now(), adopted);
  }

  private stopWatch(): void {
    const w = this.watcher;
    if (!w) return;
    w.stop();
    this.cpuPast += w.cpuSeconds;
    this.watcher = null;
  }

  /** READY=1: STARTING -> RUNNING (instead of startMs). */
  private onReady(w: BotWatch): void {
    w.readySeen = true;
    const inst = this.proc;
    if (this.watcher !== w || !inst || this.current !== 'starting') return;
    this.cancelTimer();
    this.quickFailures = 0;
    this.gateRefusals = 0;
    this.changeState('running', { pid: inst.pid, ready: 'notify' });
  }

  private onUnresponsive(w: BotWatch, check: LivenessCheck, lastSeenMs: number | null): void {
    const inst = this.proc;
    const action = this.account.liveness?.action ?? 'alert';
    if (this.watcher !== w || !inst) return;
    const lastSeen = lastSeenMs === null ? null : new Date(lastSeenMs).toISOString();
    this.log.warn({ check, lastSeen, action }, 'the bot is alive but unresponsive');
    this.deps.events.emit('bot.unresponsive', { account: this.id, pid: inst.pid, check, lastSeen, action, actor: 'system:liveness' });
    if (action === 'restart') this.serialize(() => this.restartFor(inst, 'unresponsive')).catch((err: unknown) => this.log.error({ err }, 'restart of an unresponsive bot failed'));
  }

  private onLimit(w: BotWatch, limit: 'memory' | 'cpu', value: number): void {
    const inst = this.proc;
    const action = this.account.limits?.action ?? 'alert';
    if (this.watcher !== w || !inst) return;
    this.log.warn({ limit, value, action }, 'the bot is over a limit');
    this.deps.events.emit('bot.limit_exceeded', { account: this.id, pid: inst.pid, limit, value, action, actor: 'system:limits' });
    if (action === 'restart') this.serialize(() => this.restartFor(inst, 'limit')).catch((err: unknown) => this.log.error({ err }, 'restart of a bot over its limit failed'));
  }

  private onScheduled(w: BotWatch): void {
    const inst = this.proc;
    if (this.watcher !== w || !inst) return;
    this.serialize(() => this.restartFor(inst, 'schedule')).catch((err: unknown) => this.log.error({ err }, 'scheduled restart failed'));
  }

  /**
   * A restart decided by botwarden (unresponsive, a limit, the schedule): a graceful stop, then a
   * start through the one gate (SPEC 14.5), the lock kept in between. Unresponsive and limit
   * restarts count toward maxRestarts: past it the bot goes FATAL instead of looping.
   * RUNNING/STARTING -> STOPPING -> STARTING (or BACKOFF, FATAL).
   */
  private async restartFor(inst: LiveInstance, reason: 'unresponsive' | 'limit' | 'schedule'): Promise<void> {
    if (this.proc !== inst || (this.current !== 'running' && this.current !== 'starting')) return;
    this.cancelTimer();
    this.changeState('stopping', { reason, pid: inst.pid, actor: `system:${reason === 'unresponsive' ? 'liveness' : reason === 'limit' ? 'limits' : 'schedule'}` });
    await this.prestop(reason);
    if (!(await this.end(inst, this.account.stop.graceMs, { cause: 'stopped', reason }))) return this.holdUnkillable(inst);
    if (reason !== 'schedule' && ++this.healthRestarts > this.account.restart.maxRestarts) {
      await this.lease.release();
      // STOPPING -> FATAL: restarted maxRestarts times and still unresponsive (or over its limit).
      this.changeState('fatal', { reason: reason satisfies FatalReason, restarts: this.healthRestarts - 1 });
      return;
    }
    this.restarts++;
    await this.launch(true);
  }

  /**
   * The pre-stop hook (`stop.before`) before the stop signal of a requested stop, restart,
   * rotation, schedule, liveness or limit restart; never on a fence, a shutdown, a duplicate or an
   * emergency stop (grace 0).
   */
  private async prestop(reason: StopReason, graceMs = this.account.stop.graceMs): Promise<void> {
    const hook = this.account.stop.before;
    if (!hook || graceMs === 0 || reason === 'fence' || reason === 'shutdown' || reason === 'duplicate') return;
    const abort = new Promise<void>((resolve) => (this.hookAbort = resolve));
    try {
      // The bot's own instance marker: the hook is part of the bot's tree, never a copy the hunter
      // ends (it carries BOTWARDEN_ACCOUNT), and nothing it leaves behind outlives the stop.
      const inst = this.proc;
      const env = { ...this.deps.env.base(this.id), ...this.account.env, BOTWARDEN_ACCOUNT: this.id, ...(inst ? { BOTWARDEN_INSTANCE: inst.instanceId } : {}) };
      const r = await this.deps.host.runHook(hook, { cwd: this.account.cwd, env, logPath: this.logPath, abort });
      this.deps.events.emit('bot.prestop', { account: this.id, reason, ok: r.ok, ms: Math.round(r.ms), ...(r.detail ? { detail: r.detail } : {}) });
      if (!r.ok) this.log.warn({ ...r }, 'the pre-stop hook did not end well; the stop goes on');
    } finally {
      this.hookAbort = null;
    }
  }

  private watch(inst: LiveInstance, armStartTimer: boolean): void {
    if (armStartTimer) {
      this.timer = this.deps.clock.setTimeout(() => {
        this.timer = null;
        // STARTING -> RUNNING: alive for startMs.
        if (this.proc === inst && this.current === 'starting') {
          this.quickFailures = 0;
          this.gateRefusals = 0;
          this.changeState('running', { pid: inst.pid });
        }
      }, this.account.startMs);
    }
    void inst.exited.then((status) => {
      // A stop in progress handles its own exit; everything else is unexpected.
      if (this.proc === inst && this.current !== 'stopping') {
        this.serialize(() => this.onUnexpectedExit(inst, status)).catch((err: unknown) => this.log.error({ err }, 'handling an unexpected exit failed'));
      }
    });
  }

  private async onUnexpectedExit(inst: LiveInstance, status: ExitStatus): Promise<void> {
    if (this.proc !== inst) return; // a stop got there first
    this.cancelTimer();
    const wasStarting = this.current === 'starting';
    // The leader is gone; whatever it left behind (workers, setsid grandchildren) goes too, before
    // anything restarts (SPEC 14.4).
    if (!(await this.end(inst, this.account.stop.graceMs, { cause: this.causeOf(inst, status) }, status))) return this.holdUnkillable(inst);
    const next = afterExit({ wasStarting, quickFailures: this.quickFailures, code: status.code, signal: status.signal }, this.account.restart);
    this.quickFailures = next.quickFailures;
    if (next.kind === 'backoff') return this.enterBackoff(next.attempt);
    await this.lease.release();
    if (next.kind === 'fatal') this.changeState('fatal', { reason: next.reason, failures: this.quickFailures });
    else this.changeState('stopped', { reason: 'exited' });
  }

  private enterBackoff(attempt: number, fields: Record<string, unknown> = {}): void {
    const delayMs = backoffDelay(this.account.restart, attempt);
    this.changeState('backoff', { delayMs, attempt, ...fields });
    this.timer = this.deps.clock.setTimeout(() => {
      this.timer = null;
      this.serialize(async () => {
        if (this.current !== 'backoff') return;
        this.restarts++;
        // BACKOFF -> STARTING, through the start gate
        await this.launch(true);
      }).catch((err: unknown) => this.log.warn({ err }, 'restart failed'));
    }, delayMs);
  }

  private async stopNow(reason: StopReason, graceMs: number | undefined): Promise<void> {
    switch (this.current) {
      case 'stopped':
      case 'fatal':
        return;
      case 'backoff':
        // BACKOFF -> STOPPED: nothing runs; cancel the pending restart.
        this.cancelTimer();
        await this.lease.release();
        this.changeState('stopped', { reason });
        return;
      case 'stopping':
        throw new Error('stopNow while stopping: operations are serialized, this cannot happen');
      case 'starting':
      case 'running': {
        const inst = this.proc;
        if (!inst) throw new Error(`${this.id} is ${this.current} without a process`);
        this.cancelTimer();
        // STARTING/RUNNING -> STOPPING
        this.changeState('stopping', { reason, pid: inst.pid });
        await this.prestop(reason, graceMs ?? this.account.stop.graceMs);
        if (!(await this.end(inst, graceMs ?? this.account.stop.graceMs, { cause: 'stopped', reason }))) return this.holdUnkillable(inst);
        await this.lease.release();
        // STOPPING -> STOPPED: the process and its tree are gone.
        this.changeState('stopped', { reason });
      }
    }
  }

  /**
   * Ends the instance's tree and forgets it: the exit is recorded, the output read to its end.
   * False when part of the tree outlived SIGKILL: the caller keeps the lock (SPEC 14.7).
   */
  private async end(inst: LiveInstance, graceMs: number, why: { cause: ExitCause; reason?: string }, known?: ExitStatus): Promise<boolean> {
    if (this.proc === inst) this.stopWatch();
    // A stop asked for during the pre-stop hook may have shortened this one.
    const grace = new Grace(this.deps.clock, Math.min(graceMs, this.pendingGraceMs ?? Infinity));
    this.pendingGraceMs = null;
    this.grace = grace;
    try {
      const { status, forced, gone, at } = await endInstance(this.deps, this.account, inst, { grace, why, ...(known ? { known } : {}) });
      this.lastExit = { code: status.code, signal: status.signal, at, forced, ...why };
      if (this.proc === inst) this.proc = null;
      this.output.unfollow();
      if (gone) this.spawned = null;
      else this.remains = inst;
      return gone;
    } finally {
      if (this.grace === grace) this.grace = null;
    }
  }

  /**
   * Why a process we did not stop ended: by itself (a code, or unknown for an adopted bot), the
   * kernel's OOM killer (its log names the pid), or a signal botwarden did not send.
   */
  private causeOf(inst: LiveInstance, status: ExitStatus): ExitCause {
    if (status.signal === null) return 'exit';
    if (status.signal === 'SIGKILL' && this.deps.host.killedByOom(inst.pid)) return 'oom';
    return 'killed-outside';
  }

  /** STOPPING/RUNNING/STARTING -> FATAL (unkillable): the lock stays until the tree is gone. */
  private holdUnkillable(inst: LiveInstance): void {
    this.log.error({ pid: inst.pid, instanceId: inst.instanceId }, 'part of the bot outlived SIGKILL by 5 s: its lock and key stay held until it is gone');
    this.changeState('fatal', { reason: 'unkillable' satisfies FatalReason, pid: inst.pid, instanceId: inst.instanceId });
    this.watchRemains(inst);
  }

  /** Looks at an unkillable tree every second; once it is gone, the lock goes too. */
  private watchRemains(inst: LiveInstance): void {
    this.deps.clock.setTimeout(() => {
      if (this.remains !== inst) return;
      if (this.deps.host.lives({ instanceId: inst.instanceId, pid: inst.pid, pgid: inst.pgid, startTicks: inst.startTicks })) return this.watchRemains(inst);
      this.serialize(async () => {
        if (this.remains !== inst) return;
        this.remains = null;
        this.spawned = null;
        if (this.unrecordedExit === inst.instanceId) {
          this.unrecordedExit = null;
          recordExit(this.deps, { account: this.id, pid: inst.pid, instanceId: inst.instanceId }, { code: null, signal: 'SIGKILL' }, true, { cause: 'stopped', reason: 'unkillable' });
        }
        this.log.warn({ pid: inst.pid }, 'the unkillable tree is gone at last: lock released');
        await this.lease.release();
      }).catch((err: unknown) => this.log.error({ err }, 'releasing the lock of a tree that went away failed'));
    }, REMAINS_POLL_MS);
  }
}
