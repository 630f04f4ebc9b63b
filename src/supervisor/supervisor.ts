/**
 * All bots of the daemon: one BotController per configured account. Knows
 * nothing of HTTP; the HTTP adapter and the CLI call these methods.
 */
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { ACCOUNT_ID_RE, type Account, type Config } from '../config/schema.js';
import type { LockBackend } from '../db/locks.js';
import type { Registry } from '../db/registry.js';
import { Errors } from '../errors.js';
import type { EventStore } from '../events/store.js';
import type { KeyPool } from '../keys/pool.js';
import { TailerGroup } from '../output/tailer.js';
import { BotController, type BotView } from './bot.js';
import { unconfiguredAccount } from './unconfigured.js';
import { isStaleLock } from './lease.js';
import type { ProcessHost } from '../host/host.js';
import type { BotListener, NonceFacts, StartGate } from './types.js';
import { ACTIVE_STATES, type StopReason } from './states.js';

export interface SupervisorDeps {
  registry: Registry;
  events: EventStore;
  locks: LockBackend;
  clock: Clock;
  logger: Logger;
  daemonId: string;
  holder: string;
  logsDir: string;
  /** The daemon's own process environment (not the .env file); BOTWARDEN_* and key variables are removed before a bot sees it. */
  env: NodeJS.ProcessEnv;
  /** The .env file's variables: a bot gets only those its account names (SPEC 15). */
  dotenv?: Readonly<Record<string, string>>;
  keys: KeyPool;
  /** Wraps a bot's argv so it dies with the daemon (PostgreSQL mode). */
  wrapCommand?: (command: string[]) => string[];
  /** What a nonce diagnosis needs (SPEC 17). */
  nonceFacts?: NonceFacts;
  /** BOTWARDEN_SCOPE, given to every bot: the daemon hunts only this scope (settings.scope). */
  scope?: string | undefined;
  /** Forks, signals and /proc reads: the machine's processes (src/host/), or a fake one (the unit layer). */
  host: ProcessHost;
  /** The start gate every start passes (the duplicate hunter's). */
  gate: StartGate;
}

type LineHandler = (account: string, line: string) => void;

export class Supervisor {
  private readonly bots = new Map<string, BotController>();
  private readonly lineHandlers: LineHandler[] = [];
  private readonly spawnHandlers: ((account: string) => void)[] = [];
  /** Every bot's process and output, told to whoever subscribed (onSpawn, onLine). */
  private readonly listener: BotListener = {
    spawned: (account) => {
      for (const h of this.spawnHandlers) h(account);
    },
    line: (account, line) => {
      for (const h of [...this.lineHandlers]) h(account, line);
    },
  };
  private readonly botEnv = { base: (account: string) => this.baseEnv(account) };
  private config: Config;
  private shuttingDown = false;
  private envFor: { config: Config; env: Readonly<Record<string, string>>; drop: Set<string>; perAccount: Map<string, Readonly<Record<string, string>>> } | null = null;
  /**
   * Every bot's log tailer shares its timers and read buffer with the others. Its timers run on
   * real time, not the daemon clock: they bound how late a line is read, they decide nothing, and
   * a test driving the daemon clock must still see every line a bot prints.
   */
  private readonly tailers = new TailerGroup();

  constructor(
    config: Config,
    private readonly deps: SupervisorDeps,
  ) {
    this.config = config;
    for (const account of config.accounts.values()) this.bots.set(account.id, this.makeController(account.id));
  }

  /** The machine's processes, as every bot sees them. */
  get host(): ProcessHost {
    return this.deps.host;
  }

  /** The controller of an account, or UNKNOWN_ACCOUNT / INVALID_ACCOUNT_ID. */
  get(account: string): BotController {
    if (!ACCOUNT_ID_RE.test(account)) throw Errors.invalidAccountId(account);
    const bot = this.bots.get(account);
    if (!bot) throw Errors.unknownAccount(account);
    return bot;
  }

  all(): BotController[] {
    // A bot whose account left the config is kept only while something of it lives or is held.
    for (const [id, b] of this.bots) if (!b.configured && !this.holds(b)) this.bots.delete(id);
    return [...this.bots.values()];
  }

  list(): BotView[] {
    return this.all().map((b) => b.view());
  }

  start(account: string): Promise<BotView> {
    if (this.shuttingDown) return Promise.reject(Errors.shuttingDown());
    const bot = this.get(account);
    // Its account left the config: it can be stopped, never started again (SPEC 14.3).
    if (!bot.configured) return Promise.reject(Errors.unknownAccount(account));
    return bot.start();
  }

  stop(account: string, opts: { graceMs?: number; force?: boolean; reason?: StopReason } = {}): Promise<BotView> {
    return this.get(account).stop(opts);
  }

  restart(account: string, opts: { graceMs?: number } = {}): Promise<BotView> {
    if (this.shuttingDown) return Promise.reject(Errors.shuttingDown());
    return this.get(account).restart(opts);
  }

  /**
   * Removes lock rows whose process is dead, a zombie or a reused pid, and rows
   * that never got a process from a daemon that is not us. Locks our bots hold
   * are left to their own exit watch (a child's exit event, or the identity
   * poll of an adopted bot), which also applies the restart policy.
   */
  async sweepStaleLocks(): Promise<number> {
    let removed = 0;
    // Every row is one of ours (the common case, every scan): nothing to list.
    let held = 0;
    for (const b of this.bots.values()) if (b.lockToken !== null) held++;
    if ((await this.deps.locks.count()) === held) return 0;
    for (const lock of await this.deps.locks.list()) {
      const bot = this.bots.get(lock.account);
      if (bot && bot.lockToken === lock.token) continue;
      if (!this.deps.locks.isOurs(lock) || !isStaleLock(lock, this.deps.holder, this.deps.host) || !(await this.deps.locks.release(lock.account, lock.token))) continue;
      removed++;
      this.deps.events.emit('lock.stale_removed', { account: lock.account, holder: lock.holder, pid: lock.pid, token: lock.token });
      this.deps.logger.warn({ account: lock.account, pid: lock.pid, holder: lock.holder }, 'stale lock removed');
    }
    return removed;
  }

  /** True when the instance runs under any daemon's live lease (not a duplicate). */
  isLeasedInstance(instanceId: string, youngOf: string | null = null): Promise<boolean> {
    return this.deps.locks.isLeasedInstance(instanceId, youngOf);
  }

  /** The lease of an account was lost (PostgreSQL): stop its bot at once (reason `fence`). */
  fence(account: string, token: number, urgent = false): Promise<void> {
    const bot = this.bots.get(account);
    return bot ? bot.fence(token, urgent) : Promise.resolve();
  }

  /** A bot's process was just spawned, before its lock records it (PostgreSQL: the watchdog's beat). */
  onSpawn(handler: (account: string) => void): void {
    this.spawnHandlers.push(handler);
  }

  /** Every output line of every bot; returns the unsubscribe function. */
  onLine(handler: LineHandler): () => void {
    this.lineHandlers.push(handler);
    return () => {
      const i = this.lineHandlers.indexOf(handler);
      if (i >= 0) this.lineHandlers.splice(i, 1);
    };
  }

  currentConfig(): Config {
    return this.config;
  }

  /**
   * Applies a new, already validated config. New accounts appear; changed ones take the new
   * settings at their next start. A config that would drop (or rename) an account whose bot runs
   * is refused with ACCOUNT_RUNNING before anything changes (SPEC 14.3): the bot would lose its
   * lock and key while it trades.
   */
  applyConfig(next: Config): void {
    const running = [...this.bots.values()].filter((b) => b.configured && !next.accounts.has(b.id) && this.holds(b)).map((b) => b.id);
    if (running.length > 0) throw Errors.accountRunning(running);
    this.config = next;
    this.deps.keys.setConfig(next);
    for (const account of next.accounts.values()) {
      const bot = this.bots.get(account.id);
      if (bot) {
        bot.updateAccount(account);
        bot.configured = true;
      } else this.bots.set(account.id, this.makeController(account.id));
    }
    for (const [id, bot] of this.bots) if (!next.accounts.has(id) && !this.holds(bot)) this.bots.delete(id);
  }

  /**
   * Boot: a live bot whose account is not in the config (removed or renamed while no daemon ran,
   * or a leave-running upgrade). It is adopted as `configured: false`: visible, stoppable, never
   * restarted, and it keeps its lock and key until its tree is gone (SPEC 14.3).
   */
  unconfigured(account: string): BotController {
    let bot = this.bots.get(account);
    if (!bot) {
      bot = this.makeController(account, unconfiguredAccount(account));
      bot.configured = false;
      this.bots.set(account, bot);
    }
    return bot;
  }

  /** The bot holds its account: a process lives, a restart is pending, or its lock is still held. */
  private holds(b: BotController): boolean {
    return ACTIVE_STATES.has(b.state) || b.lockToken !== null || b.unkillable !== null;
  }

  /** SIGTERM: stop every bot in parallel (default), or leave them running for the next daemon. */
  async shutdown(mode: 'stop-bots' | 'leave-running'): Promise<void> {
    this.shuttingDown = true;
    if (mode === 'leave-running') {
      for (const b of this.bots.values()) b.detach();
      return;
    }
    // Every bot's `stopping` in one commit; each signal leaves once that commit is done.
    this.deps.events.begin();
    await Promise.allSettled([...this.bots.values()].map((b) => b.stop({ reason: 'shutdown' })));
  }

  /**
   * The environment a bot inherits (SPEC 15): the daemon's own process environment minus every
   * BOTWARDEN_* variable and every key variable, plus the .env variables its account names (${NAME}
   * in its env or command, or passEnv). Its env, BOTWARDEN_ACCOUNT/INSTANCE and its leased pair go
   * on top at the spawn. Worked out once per config and account (it was ~0.2 ms per start); callers copy it.
   */
  baseEnv(account?: string): Readonly<Record<string, string>> {
    if (this.envFor?.config !== this.config) this.envFor = { config: this.config, ...this.computeBaseEnv(), perAccount: new Map() };
    const e = this.envFor;
    if (account === undefined) return e.env;
    let env = e.perAccount.get(account);
    if (env === undefined) {
      const acc = this.config.accounts.get(account);
      const named: Record<string, string> = {};
      const dotenv = this.deps.dotenv ?? {};
      for (const name of [...(acc?.envRefs ?? []), ...(acc?.passEnv ?? [])]) {
        const v = dotenv[name];
        if (v !== undefined && !e.drop.has(name) && !name.startsWith('BOTWARDEN_') && !(name in e.env)) named[name] = v;
      }
      env = Object.keys(named).length === 0 ? e.env : Object.freeze({ ...e.env, ...named });
      e.perAccount.set(account, env);
    }
    return env;
  }

  private computeBaseEnv(): { env: Readonly<Record<string, string>>; drop: Set<string> } {
    const drop = new Set<string>();
    for (const k of Object.values(this.config.keys)) {
      drop.add(k.keyEnv);
      drop.add(k.secretEnv);
    }
    for (const a of this.config.accounts.values()) {
      if (a.keys) {
        drop.add(a.keys.envKey);
        drop.add(a.keys.envSecret);
      }
    }
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(this.deps.env)) if (v !== undefined && !drop.has(k) && !k.startsWith('BOTWARDEN_')) env[k] = v;
    if (this.deps.scope !== undefined) env.BOTWARDEN_SCOPE = this.deps.scope;
    return { env: Object.freeze(env), drop };
  }

  private makeController(id: string, given?: Account): BotController {
    const d = this.deps;
    const account = given ?? this.config.accounts.get(id);
    if (!account) throw new Error(`no account ${id}`);
    return new BotController(account, {
      registry: d.registry,
      events: d.events,
      locks: d.locks,
      clock: d.clock,
      logger: d.logger,
      holder: d.holder,
      daemonId: d.daemonId,
      logsDir: d.logsDir,
      wrapCommand: d.wrapCommand ?? ((c) => c),
      host: d.host,
      gate: d.gate,
      logRotation: { maxBytes: this.config.daemon.logs.maxBytes, files: this.config.daemon.logs.files },
      tailers: this.tailers,
      env: this.botEnv,
      keys: d.keys,
      listener: this.listener,
      ...(d.nonceFacts ? { nonceFacts: d.nonceFacts } : {}),
    });
  }
}
