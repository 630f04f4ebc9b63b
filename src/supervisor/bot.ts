/**
 * One account's bot: its state machine, its process, its lock. Every state
 * change goes through `changeState`, which checks the transition table,
 * persists, logs and emits. Operations on one account are serialized through
 * a promise queue; different accounts never wait on each other.
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../clock.js';
import type { Account } from '../config/schema.js';
import type { LockBackend, LockRow } from '../db/locks.js';
import type { BotRow, LastExit, Registry } from '../db/registry.js';
import { Errors, isBotwardenError, type LockFacts } from '../errors.js';
import type { EventStore } from '../events/store.js';
import type { KeyPool } from '../keys/pool.js';
import { sanitizeLine } from '../monitor/patterns.js';
import { LogTailer } from '../monitor/tailer.js';
import { isAlive } from '../proc/procfs.js';
import { NonceBreaker } from './breaker.js';
import { spawnBot, type ExitStatus } from './spawn.js';
import { ACTIVE_STATES, assertTransition, STATE_EVENT, type BotState } from './states.js';
import { terminate } from './terminate.js';

export interface BotDeps {
  registry: Registry;
  events: EventStore;
  locks: LockBackend;
  clock: Clock;
  logger: Logger;
  /** `<daemon id>@<host>`: written into lock rows. */
  holder: string;
  daemonId: string;
  logsDir: string;
  logRotation: { maxBytes: number; files: number };
  /** The environment every bot inherits (the daemon's, minus secrets). */
  baseEnv: () => Record<string, string>;
  /** Every complete output line of the bot (the nonce / duplicate scanners hook in here). */
  onLine: (account: string, line: string) => void;
  /** Runs before a start takes the lock: ends or refuses live duplicates of the account. */
  beforeStart: (account: Account) => Promise<void>;
  keys: KeyPool;
}

export interface BotView {
  account: string;
  name: string;
  broker: string;
  brokerUsername: string;
  state: BotState;
  pid: number | null;
  instanceId: string | null;
  startedAt: string | null;
  restarts: number;
  keyId: string | null;
  lastExit: LastExit | null;
  nonceErrors: { inWindow: number; total: number };
  lock: LockFacts | null;
}

export type StopReason = 'request' | 'rotation' | 'duplicate' | 'shutdown' | 'fence';

/** A live process of this bot. Adopted ones (not our children) get `exited` from a poll. */
export interface LiveInstance {
  instanceId: string;
  pid: number;
  pgid: number;
  startTicks: number | null;
  startedAt: string;
  keyId: string | null;
  logPath: string;
  exited: Promise<ExitStatus>;
}

export class BotController {
  state: BotState = 'stopped';
  private current: LiveInstance | null = null;
  private lock: LockRow | null = null;
  private restarts = 0;
  private quickFailures = 0;
  private lastExit: LastExit | null = null;
  private timer: TimerHandle | null = null;
  private tailer: LogTailer | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly log: Logger;
  /** The API key leased with the lock (kept through backoff, changed by rotation). */
  private keyId: string | null = null;
  private readonly breaker: NonceBreaker;

  constructor(
    public account: Account,
    private readonly deps: BotDeps,
  ) {
    this.log = deps.logger.child({ account: account.id });
    this.breaker = new NonceBreaker(account.nonceErrors, () => deps.clock.now());
  }

  get id(): string {
    return this.account.id;
  }

  get live(): LiveInstance | null {
    return this.current;
  }

  get holderName(): string {
    return this.deps.holder;
  }

  get lockToken(): number | null {
    return this.lock?.token ?? null;
  }

  /**
   * True when the persisted state says the bot was meant to be up when the last
   * daemon went away (starting, running, backoff). A bot that was `stopping` was
   * meant to go: finding it dead is no reason to restart it.
   */
  wasActive = false;

  /** Boot: takes the counters and last exit persisted by the previous daemon. */
  restore(row: BotRow): void {
    this.restarts = row.restarts;
    this.lastExit = row.lastExit;
    this.wasActive = row.state === 'starting' || row.state === 'running' || row.state === 'backoff';
    // The row's state is only a record; the live state is rebuilt from /proc.
    if (row.state === 'fatal') this.state = 'fatal';
  }

  /**
   * Boot: the bot was up when the last daemon went away and is dead now.
   * Its exit status is unknown, so it counts as a failure for the policy.
   * STOPPED -> BACKOFF (restart) or stays STOPPED (policy never).
   */
  async recoverDead(): Promise<void> {
    this.wasActive = false;
    this.lastExit = { code: null, signal: null, at: new Date(this.deps.clock.now()).toISOString(), forced: false };
    if (this.account.restart.policy === 'never' || this.state !== 'stopped') {
      this.deps.registry.saveBot(
        { account: this.id, state: this.state, instanceId: null, restarts: this.restarts, keyId: null, lastExit: this.lastExit },
        this.lastExit.at,
      );
      return;
    }
    await this.serialize(async () => {
      await this.acquireLock();
      this.enterBackoff(1);
    });
  }

  get logPath(): string {
    return path.join(this.deps.logsDir, `${this.account.id}.log`);
  }

  view(): BotView {
    const a = this.account;
    return {
      account: a.id,
      name: a.name,
      broker: a.broker,
      brokerUsername: a.brokerUsername,
      state: this.state,
      pid: this.current?.pid ?? null,
      instanceId: this.current?.instanceId ?? null,
      startedAt: this.current?.startedAt ?? null,
      restarts: this.restarts,
      keyId: this.keyId,
      lastExit: this.lastExit,
      nonceErrors: { inWindow: this.breaker.inWindow(), total: this.breaker.total },
      lock: this.lockFacts(),
    };
  }

  /** Start: refused at once when the account is taken, else queued behind any running operation. */
  start(): Promise<BotView> {
    this.assertStartable();
    return this.serialize(async () => {
      this.assertStartable();
      await this.deps.beforeStart(this.account);
      this.assertStartable();
      await this.acquireLock();
      this.restarts = 0;
      this.quickFailures = 0;
      await this.launch();
      return this.view();
    });
  }

  stop(opts: { reason?: StopReason; graceMs?: number } = {}): Promise<BotView> {
    return this.serialize(async () => {
      await this.stopNow(opts.reason ?? 'request', opts.graceMs);
      return this.view();
    });
  }

  restart(opts: { graceMs?: number } = {}): Promise<BotView> {
    if (this.state === 'stopping') this.assertStartable();
    return this.serialize(async () => {
      await this.stopNow('request', opts.graceMs);
      this.assertStartable();
      await this.deps.beforeStart(this.account);
      await this.acquireLock();
      this.restarts = 0;
      this.quickFailures = 0;
      await this.launch();
      return this.view();
    });
  }

  /** For leave-running shutdown: forget timers and tailing, keep the process and its lock. */
  detach(): void {
    this.cancelTimer();
    this.tailer?.stop();
    this.tailer = null;
  }

  updateAccount(account: Account): void {
    this.account = account;
    this.breaker.configure(account.nonceErrors);
  }

  // ---- nonce errors and key rotation ------------------------------------

  /** Every output line: a nonce / API-key error is an event and counts toward the circuit breaker. */
  private scanLine(line: string): void {
    const hit = this.breaker.hit(line);
    if (!hit) return;
    if (this.keyId) this.deps.keys.countNonceError(this.keyId);
    this.deps.events.emit('nonce.error', {
      account: this.id,
      keyId: this.keyId,
      pattern: hit.pattern,
      inWindow: hit.inWindow,
      line: sanitizeLine(line, this.deps.keys.secretValues()),
    });
    const inst = this.current;
    // Failed calls count toward the exchange's lockout: stop at once, no retry on this key.
    if (hit.trip && inst) void this.serialize(() => this.rotate(inst)).catch((err: unknown) => this.log.error({ err }, 'key rotation failed'));
  }

  /**
   * The circuit breaker: stop at once, cool the key down, restart on the next free key.
   * RUNNING/STARTING -> STOPPING -> STARTING (next key) or FATAL (keys-exhausted).
   */
  private async rotate(inst: LiveInstance): Promise<void> {
    if (this.current !== inst || (this.state !== 'running' && this.state !== 'starting')) return;
    const from = this.keyId;
    this.cancelTimer();
    this.changeState('stopping', { reason: 'rotation', pid: inst.pid, keyId: from });
    await this.endTree(inst, this.account.stop.graceMs);
    const now = this.deps.clock.now();
    const lock = this.lock;
    let to: string | null = null;
    if (from !== null && lock) {
      const coolUntil = now + this.account.nonceErrors.cooldownMs;
      to = await this.deps.locks.rotateKey(this.id, lock.token, from, coolUntil, this.deps.keys.candidates(this.account) ?? [], now);
      this.deps.events.emit('key.rotated', { account: this.id, from, to, cooldownUntil: new Date(coolUntil).toISOString() });
    }
    this.breaker.reset();
    if (to === null) {
      this.keyId = null;
      await this.releaseLock();
      this.changeState('fatal', { reason: from === null ? 'nonce-errors' : 'keys-exhausted', keyId: from });
      return;
    }
    this.keyId = to;
    this.restarts++;
    await this.launch();
  }

  // ---- internals -------------------------------------------------------

  private serialize<T>(op: () => Promise<T>): Promise<T> {
    const run = this.queue.then(op, op);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private assertStartable(): void {
    if (ACTIVE_STATES.has(this.state)) {
      throw Errors.accountLocked(this.account.name, this.account.brokerUsername, this.lockFacts());
    }
  }

  private lockFacts(): LockFacts | null {
    if (!this.lock) return null;
    return {
      holder: this.lock.holder,
      since: this.current?.startedAt ?? this.lock.createdAt,
      token: this.lock.token,
      pid: this.current?.pid ?? this.lock.pid,
    };
  }

  private async acquireLock(): Promise<void> {
    let res;
    try {
      res = await this.deps.locks.acquire({
        account: this.id,
        holder: this.deps.holder,
        brokerUsername: this.account.brokerUsername,
        // Stale: its process is dead or its pid now belongs to another process;
        // or no process was ever attached by a daemon that is not us.
        isStale: (row) => (row.pid === null ? row.holder !== this.deps.holder : !isAlive(row.pid, row.startTicks)),
        keys: this.deps.keys.candidates(this.account),
        nowMs: this.deps.clock.now(),
      });
    } catch (err) {
      if (isBotwardenError(err)) throw err;
      throw Errors.lockBackendUnavailable((err as Error).message, err);
    }
    if (!res.ok && 'noFreeKey' in res) throw Errors.noFreeKey(this.id, this.account.keys?.pool ?? []);
    if (!res.ok) {
      const h = res.heldBy;
      throw Errors.accountLocked(this.account.name, h.brokerUsername || this.account.brokerUsername, {
        holder: h.holder,
        since: h.createdAt,
        token: h.token,
        pid: h.pid,
      });
    }
    if (res.staleRemoved) {
      const s = res.staleRemoved;
      this.deps.events.emit('lock.stale_removed', { account: this.id, holder: s.holder, pid: s.pid, token: s.token });
    }
    this.lock = res.lock;
    this.keyId = res.keyId;
    this.breaker.reset();
    this.deps.events.emit('lock.acquired', { account: this.id, holder: res.lock.holder, token: res.lock.token, keyId: res.keyId });
  }

  private async releaseLock(): Promise<void> {
    const lock = this.lock;
    if (!lock) return;
    this.lock = null;
    this.keyId = null;
    try {
      await this.deps.locks.release(this.id, lock.token);
    } catch (err) {
      this.log.error({ err }, 'could not release the account lock');
    }
    this.deps.events.emit('lock.released', { account: this.id, token: lock.token });
  }

  /** Spawns a new instance under the lock we hold. STOPPED/FATAL/BACKOFF -> STARTING. */
  private async launch(): Promise<void> {
    const lock = this.lock;
    if (!lock) throw new Error(`launch without a lock for ${this.id}`);
    const a = this.account;
    const instanceId = randomUUID();
    const startedAt = new Date(this.deps.clock.now()).toISOString();
    const logPath = this.logPath;
    this.deps.registry.createInstance({ id: instanceId, account: a.id, daemonId: this.deps.daemonId, keyId: this.keyId, logPath, startedAt });
    // The leased pair goes only here, into the bot's own environment.
    const keyEnv = this.keyId !== null ? this.deps.keys.envFor(a, this.keyId) : {};
    const env = { ...this.deps.baseEnv(), ...a.env, ...keyEnv, BOTWARDEN_ACCOUNT: a.id, BOTWARDEN_INSTANCE: instanceId };
    let spawned;
    try {
      spawned = await spawnBot({ command: a.command, cwd: a.cwd, env, logPath });
    } catch (err) {
      this.deps.registry.markExited(instanceId, { code: null, signal: null, forced: false, endedAt: startedAt });
      await this.releaseLock();
      const message = (err as Error).message;
      this.changeState('fatal', { reason: 'spawn-failed', message });
      throw Errors.spawnFailed(a.id, message, err);
    }
    this.deps.registry.markSpawned(instanceId, spawned.pid, spawned.startTicks, spawned.pgid);
    const inst: LiveInstance = {
      instanceId,
      pid: spawned.pid,
      pgid: spawned.pgid,
      startTicks: spawned.startTicks,
      startedAt,
      keyId: this.keyId,
      logPath,
      exited: spawned.exited,
    };
    this.current = inst;
    this.breaker.rearm();
    await this.deps.locks.attach(a.id, lock.token, { instanceId, pid: inst.pid, startTicks: inst.startTicks });
    this.startTailer(inst.logPath, true);
    this.changeState('starting', { pid: inst.pid, instanceId });
    this.watch(inst);
  }

  /** Takes over a live process found at boot (not our child). STOPPED -> RUNNING. */
  adopt(inst: LiveInstance, lock: LockRow): void {
    this.current = inst;
    this.lock = lock;
    this.keyId = inst.keyId;
    this.startTailer(inst.logPath, true);
    this.changeState('running', { pid: inst.pid, instanceId: inst.instanceId, adopted: true });
    this.deps.events.emit('bot.adopted', { account: this.id, pid: inst.pid, instanceId: inst.instanceId });
    this.watch(inst, false);
  }

  private watch(inst: LiveInstance, armStartTimer = true): void {
    if (armStartTimer) {
      this.timer = this.deps.clock.setTimeout(() => {
        this.timer = null;
        // STARTING -> RUNNING: alive for startMs.
        if (this.current === inst && this.state === 'starting') {
          this.quickFailures = 0;
          this.changeState('running', { pid: inst.pid });
        }
      }, this.account.startMs);
    }
    void inst.exited.then((status) => {
      // A stop in progress handles its own exit; everything else is unexpected.
      if (this.current === inst && this.state !== 'stopping') {
        void this.serialize(() => this.onUnexpectedExit(inst, status)).catch((err: unknown) =>
          this.log.error({ err }, 'handling an unexpected exit failed'),
        );
      }
    });
  }

  private async onUnexpectedExit(inst: LiveInstance, status: ExitStatus): Promise<void> {
    if (this.current !== inst) return; // a stop got there first
    this.cancelTimer();
    const wasStarting = this.state === 'starting';
    // The leader is gone; whatever it left behind (workers, setsid grandchildren) goes too.
    await this.endTree(inst, this.account.stop.graceMs, status);
    const r = this.account.restart;
    if (wasStarting) {
      this.quickFailures++;
      if (r.policy === 'never' || this.quickFailures > r.maxRestarts) {
        // STARTING -> FATAL: it never came up, and may not retry (more).
        await this.releaseLock();
        this.changeState('fatal', { reason: r.policy === 'never' ? 'exited-early' : 'too-many-failures', failures: this.quickFailures });
        return;
      }
      // STARTING -> BACKOFF: exited before startMs, try again later.
      this.enterBackoff(this.quickFailures);
      return;
    }
    const failed = status.code !== 0 || status.signal !== null;
    if (r.policy === 'always' || (r.policy === 'on-failure' && failed)) {
      // RUNNING -> BACKOFF: it ran fine for a while; restart after the first delay step.
      this.enterBackoff(1);
      return;
    }
    // RUNNING -> STOPPED: exited and the policy says leave it.
    await this.releaseLock();
    this.changeState('stopped', { reason: 'exited' });
  }

  private enterBackoff(attempt: number): void {
    const r = this.account.restart;
    const delayMs = Math.min(r.maxBackoffMs, r.backoffMs * 2 ** (attempt - 1));
    this.changeState('backoff', { delayMs, attempt });
    this.timer = this.deps.clock.setTimeout(() => {
      this.timer = null;
      void this.serialize(async () => {
        if (this.state !== 'backoff') return;
        this.restarts++;
        // BACKOFF -> STARTING
        await this.launch();
      }).catch((err: unknown) => this.log.warn({ err }, 'restart failed'));
    }, delayMs);
  }

  private async stopNow(reason: StopReason, graceMs: number | undefined): Promise<void> {
    switch (this.state) {
      case 'stopped':
      case 'fatal':
        return;
      case 'backoff':
        // BACKOFF -> STOPPED: nothing runs; cancel the pending restart.
        this.cancelTimer();
        await this.releaseLock();
        this.changeState('stopped', { reason });
        return;
      case 'stopping':
        throw new Error('stopNow while stopping: operations are serialized, this cannot happen');
      case 'starting':
      case 'running': {
        const inst = this.current;
        if (!inst) throw new Error(`${this.id} is ${this.state} without a process`);
        this.cancelTimer();
        // STARTING/RUNNING -> STOPPING
        this.changeState('stopping', { reason, pid: inst.pid });
        await this.endTree(inst, graceMs ?? this.account.stop.graceMs);
        await this.releaseLock();
        // STOPPING -> STOPPED: the process and its tree are gone.
        this.changeState('stopped', { reason });
      }
    }
  }

  /**
   * Ends the instance's whole tree (signal, grace, SIGKILL) and records its exit. `known` is the
   * leader's status when it already exited; otherwise it follows at once for our child (a poll for
   * adopted bots).
   */
  private async endTree(inst: LiveInstance, graceMs: number, known?: ExitStatus): Promise<void> {
    const { forced } = await terminate(
      { instanceId: inst.instanceId, pid: inst.pid, pgid: inst.pgid, startTicks: inst.startTicks, exited: inst.exited },
      this.account.stop.signal as NodeJS.Signals,
      graceMs,
    );
    const unknown: ExitStatus = { code: null, signal: forced ? 'SIGKILL' : null };
    const status = known ?? (await Promise.race([inst.exited, sleep(2000, unknown, { ref: false })]));
    this.finishInstance(inst, status, forced);
  }

  private finishInstance(inst: LiveInstance, status: ExitStatus, forced: boolean): void {
    const at = new Date(this.deps.clock.now()).toISOString();
    this.lastExit = { code: status.code, signal: status.signal, at, forced };
    this.deps.registry.markExited(inst.instanceId, { code: status.code, signal: status.signal, forced, endedAt: at });
    if (this.current === inst) this.current = null;
    this.tailer?.stop();
    this.tailer = null;
    this.deps.events.emit('bot.exited', { account: this.id, pid: inst.pid, instanceId: inst.instanceId, code: status.code, signal: status.signal, forced });
  }

  private startTailer(logPath: string, fromEnd: boolean): void {
    this.tailer?.stop();
    this.tailer = new LogTailer(
      logPath,
      (line) => {
        this.scanLine(line);
        this.deps.onLine(this.id, line);
      },
      { ...this.deps.logRotation, fromEnd },
    );
    this.tailer.start();
  }

  private cancelTimer(): void {
    this.timer?.cancel();
    this.timer = null;
  }

  /** The one place a bot's state changes: checked, persisted, logged, emitted. */
  private changeState(to: BotState, fields: Record<string, unknown> = {}): void {
    const from = this.state;
    assertTransition(this.id, from, to);
    this.state = to;
    const now = this.deps.clock.now();
    this.deps.registry.saveBot(
      { account: this.id, state: to, instanceId: this.current?.instanceId ?? null, restarts: this.restarts, keyId: this.keyId, lastExit: this.lastExit },
      new Date(now).toISOString(),
    );
    this.log.info({ from, to, ...fields }, `bot ${from} -> ${to}`);
    this.deps.events.emit(STATE_EVENT[to], { account: this.id, from, ...fields });
  }
}
