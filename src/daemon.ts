/**
 * Wiring: settings -> config -> data dir lock -> database -> services ->
 * HTTP. The only module that knows all the others.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { parse as parseDotenv } from 'dotenv';
import type { DestinationStream, Logger } from 'pino';
import { realClock, type Clock } from './clock.js';
import { configSecrets, loadConfigFile, ConfigError } from './config/load.js';
import { brokerOf, type Config } from './config/schema.js';
import { effectiveListen, resolveSettings, type Flags, type Settings } from './config/settings.js';
import { acquireDaemonLock, type DaemonLock } from './db/daemon-lock.js';
import { SqliteLockBackend, type LockBackend } from './db/locks.js';
import { KeyStats } from './db/key-stats.js';
import { Meta } from './db/meta.js';
import { openDatabase, type DB } from './db/open.js';
import { Registry } from './db/registry.js';
import { Errors } from './errors.js';
import { EventStore } from './events/store.js';
import { buildServer } from './http/server.js';
import { namedTokens, withoutTokenVariables } from './auth/tokens.js';
import { createLogger } from './logger.js';
import { DuplicateHunter } from './monitor/duplicates.js';
import { alertsCheck, clockCheck, duplicatesCheck, HealthService, keysCheck } from './monitor/health.js';
import { AlertService } from './alerts/service.js';
import { fatalFacts } from './alerts/facts.js';
import { AlertOutbox } from './db/alerts.js';
import { Metrics } from './metrics/metrics.js';
import { DiskWatcher } from './monitor/disk.js';
import { KeyPool } from './keys/pool.js';
import { OomLog } from './host/kmsg.js';
import { ClockService } from './monitor/clock.js';
import type { NonceFacts } from './supervisor/types.js';
import { SecretMask } from './output/patterns.js';
import { SuspectScanner } from './monitor/suspects.js';
import type { PgMode } from './pg-mode.js';
import { CommitGroup } from './db/group.js';
import { reconcile } from './supervisor/reconcile.js';
import { ExitPoller } from './host/exit-poller.js';
import { LinuxHost } from './host/host.js';
import { Spawner } from './host/spawner-client.js';
import { Supervisor } from './supervisor/supervisor.js';
import { ensureToken } from './token.js';
import { VERSION } from './version.js';

export interface DaemonOptions {
  flags?: Flags;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** A config object instead of reading settings.configPath (tests). */
  config?: Config;
  clock?: Clock;
  /** PostgreSQL mode's boot-time clock (CLOCK_BOOTTIME ms); tests inject one to simulate a wake. */
  bootClock?: () => number;
  logDestination?: DestinationStream;
  logger?: Logger;
  /** Install SIGTERM/SIGINT/SIGHUP handlers (the real daemon does; in-process tests do not). */
  handleSignals?: boolean;
}

export type ShutdownMode = 'stop-bots' | 'leave-running';

export interface Daemon {
  settings: Settings;
  supervisor: Supervisor;
  events: EventStore;
  db: DB;
  logger: Logger;
  token: string;
  address: { host: string; port: number };
  url: string;
  daemonId: string;
  shutdown(mode?: ShutdownMode): Promise<void>;
}

export class UnsupportedPlatformError extends Error {
  override readonly name = 'UnsupportedPlatformError';
}

/**
 * botwarden reads /proc to tell a bot from a reused pid, to find a bot's whole tree and to hunt
 * copies: without it, it could release a lock while the bot still runs. So Linux only (WSL2 on
 * Windows, a Linux VM or container on macOS): refuse clearly rather than half-work.
 */
export function assertSupportedPlatform(platform: string = process.platform, hasProc = existsSync('/proc/self/stat')): void {
  if (platform === 'linux' && hasProc) return;
  throw new UnsupportedPlatformError(
    `botwarden runs on Linux only (it needs /proc to tell a bot from a reused pid); this is ${platform}${platform === 'linux' ? ' without /proc' : ''}. ` +
      'On Windows use WSL2, on macOS a Linux VM or Docker; see docs/operations.md.',
  );
}

type Server = Awaited<ReturnType<typeof buildServer>>;

/** What the first step settles: where the daemon lives, what it reads, who logs and masks. */
interface Basics {
  opts: DaemonOptions;
  settings: Settings;
  secrets: SecretMask;
  logger: Logger;
  dotenv: Record<string, string>;
  /** The .env file under the real environment: where config ${NAME}s and key values come from. */
  secretEnv: NodeJS.ProcessEnv;
  config: Config;
  clock: Clock;
  logsDir: string;
  daemonLock: DaemonLock;
}

/** The stores: the database, the events, the locks (SQLite or PostgreSQL) and the keys. */
interface Stores {
  db: DB;
  pg: PgMode | null;
  token: string;
  daemonId: string;
  name: string;
  events: EventStore;
  registry: Registry;
  locks: LockBackend;
  keys: KeyPool;
  /** The config changed: mask its secrets too. */
  refreshSecrets(cfg: Config): void;
}

/** The machine's processes: the spawner, the exit polls, the kernel log, and the host over them. */
interface Processes {
  exits: ExitPoller;
  spawner: Spawner;
  oom: OomLog;
  host: LinuxHost;
}

/** The services around the supervisor. */
interface Services {
  supervisor: Supervisor;
  hunter: DuplicateHunter;
  offsets: ClockService;
  disk: DiskWatcher;
  metrics: Metrics;
  alerts: AlertService;
  health: HealthService;
}

export async function startDaemon(opts: DaemonOptions = {}): Promise<Daemon> {
  assertSupportedPlatform();
  const b = basics(opts);
  let stores: Stores | null = null;
  try {
    stores = await openStores(b);
    const procs = startProcesses(b, stores);
    const svc = startServices(b, stores, procs);
    const r0 = performance.now();
    await reconcile({ supervisor: svc.supervisor, registry: stores.registry, locks: stores.locks, events: stores.events, logger: b.logger, clock: b.clock });
    const reconcileMs = performance.now() - r0;
    const reloadConfig = reloader(b, stores, svc);
    const { app, url, port } = await serve(b, stores, svc, reloadConfig);
    const timers = startPeriodic(b, stores, svc, procs);
    const shutdown = shutdownOf(b, stores, svc, procs, app, timers);
    if (opts.handleSignals) handleSignals(b.logger, shutdown, reloadConfig);
    announce(b, stores, { url, port, reconcileMs });
    const { settings, logger } = b;
    const { events, db, token, daemonId } = stores;
    return { settings, supervisor: svc.supervisor, events, db, logger, token, address: { host: effectiveListen(settings, b.config).host, port }, url, daemonId, shutdown };
  } catch (err) {
    await stores?.pg?.close();
    stores?.db.close();
    b.daemonLock.release();
    throw err;
  }
}

/** Settings, the env file, the config, the data dir and its lock: nothing opened yet but the lock. */
function basics(opts: DaemonOptions): Basics {
  const env = opts.env ?? process.env;
  const settings = resolveSettings(opts.flags ?? {}, env, opts.cwd);
  // Every secret the daemon holds, masked in all text that leaves it (SPEC 15): its log included.
  const secrets = new SecretMask();
  const logger = opts.logger ?? createLogger(settings.logLevel, opts.logDestination, secrets.fn);
  // The env file first: config strings may say ${NAME} and take it from there.
  const { dotenv, merged: secretEnv } = loadEnvFile(settings.envFile, env, logger);
  secrets.set(Object.values(dotenv));
  const config = opts.config ?? loadConfigFile(settings.configPath, secretEnv);
  effectiveListen(settings, config); // a bad listen address fails here, before anything is opened
  mkdirSync(settings.dataDir, { recursive: true, mode: 0o700 });
  const logsDir = path.join(settings.dataDir, 'logs');
  mkdirSync(logsDir, { recursive: true, mode: 0o700 });
  const daemonLock = acquireDaemonLock(settings.dataDir);
  return { opts, settings, secrets, logger, dotenv, secretEnv, config, clock: opts.clock ?? realClock, logsDir, daemonLock };
}

async function openStores(b: Basics): Promise<Stores> {
  const { settings, config, logger, clock } = b;
  const db = openDatabase(path.join(settings.dataDir, 'botwarden.db'));
  let pg: PgMode | null = null;
  try {
    const { token } = ensureToken(settings.dataDir, settings.token);
    const daemonId = randomUUID().slice(0, 8);
    const name = config.daemon.name ?? hostname();
    const group = new CommitGroup(db, (err) => logger.error({ err }, 'a group commit failed: the writes of that turn are lost (their events are counted)'));
    const events = new EventStore(db, () => clock.now(), logger.child({ module: 'events' }), group);
    // Loaded only in PostgreSQL mode: pg is ~10 MB the SQLite daemon never needs.
    pg = config.lock.backend === 'postgres' ? await (await import('./pg-mode.js')).openPgMode(config, { holderId: `${name}/${daemonId}`, name, host: hostname(), logger, dataDir: settings.dataDir, bootClock: b.opts.bootClock }) : null;
    const locks = pg?.locks ?? new SqliteLockBackend(db, () => clock.now());
    const keys = new KeyPool(config, b.secretEnv, locks, new KeyStats(db), () => clock.now());
    // Masked: key values, the API token and the named ones (SPEC 18), webhook URLs and chat ids, the database password, every .env value.
    const refreshSecrets = (cfg: Config) => {
      keys.setOtherSecrets([token, ...configSecrets(cfg), ...Object.values(b.dotenv)]);
      b.secrets.set(keys.secretValues());
    };
    refreshSecrets(config);
    events.setMask(b.secrets.fn);
    return { db, pg, token, daemonId, name, events, registry: new Registry(db), locks, keys, refreshSecrets };
  } catch (err) {
    await pg?.close();
    db.close();
    throw err;
  }
}

function startProcesses(b: Basics, s: Stores): Processes {
  // Bots are watched by an identity poll when no spawner of ours reaps them (adopted, or their spawner died).
  // Exits found together (a shutdown) are recorded in one commit.
  const exits = new ExitPoller(b.clock, undefined, () => s.events.begin());
  const above = b.config.daemon.spawnerAbove; // read at start, as the scan interval is
  const spawner = new Spawner((pid, startTicks) => exits.watch(pid, startTicks), b.logger.child({ module: 'spawner' }), () => s.events.begin(), () => above);
  // The kernel log tells an OOM kill from another SIGKILL (lastExit.cause); unreadable: never `oom`.
  const oom = new OomLog();
  oom.open();
  return { exits, spawner, oom, host: new LinuxHost(b.clock, { spawn: spawner.spawn, exits, oom }) };
}

function startServices(b: Basics, s: Stores, p: Processes): Services {
  const { config, logger, clock, settings } = b;
  const { events, keys, pg } = s;
  // What a nonce trip's diagnosis asks (SPEC 17): the clock offset, the processes holding the key.
  const nonceFacts: NonceFacts = {
    offset: async (broker) => {
      const last = offsets.get(broker);
      // Fresh enough (measured at the first error of the window, or on the timer): no new round trip.
      if (last?.at && Date.now() - Date.parse(last.at) < 60_000 && last.error === null) return last;
      return Promise.race([offsets.checkNow(broker), new Promise<undefined>((r) => setTimeout(() => r(undefined), 3000).unref())]);
    },
    maxOffsetMs: () => supervisor.currentConfig().clock.maxOffsetMs,
    holders: (keyId, own) => hunter.keyHolders(keyId, own),
    duplicatesFound: () => hunter.scanNow(),
  };
  const supervisor: Supervisor = new Supervisor(config, {
    nonceFacts,
    host: p.host,
    // The duplicate hunter is made below (it needs the supervisor): the gate forwards to it.
    gate: { clearBeforeStart: (account): Promise<void> => hunter.clearBeforeStart(account) },
    registry: s.registry,
    events,
    locks: s.locks,
    clock,
    logger,
    daemonId: s.daemonId,
    holder: `${s.daemonId}@${hostname()}`,
    logsDir: b.logsDir,
    // SPEC 18: the variables of auth.tokens are the API's, never a bot's.
    env: withoutTokenVariables(b.opts.env ?? process.env, config),
    dotenv: b.dotenv,
    keys,
    scope: settings.scope,
    ...(pg ? { wrapCommand: pg.wrapCommand } : {}),
  });
  pg?.attach(supervisor, events);
  // This machine's clock against the exchanges' (SPEC 17): measured every checkIntervalMs and on a nonce error.
  const offsets = new ClockService(() => supervisor.currentConfig());
  const hunter: DuplicateHunter = new DuplicateHunter(supervisor, events, logger.child({ module: 'duplicates' }), () => keys.secretValues(), clock, settings.scope ?? null);
  hunter.spare(() => [p.spawner.pid, pg?.watchdogPid]);
  hunter.watchKeys(keys);
  // The clock is measured at once on a nonce error (rate-limited per exchange), so a trip finds it fresh.
  events.subscribe((e) => {
    if (e.type !== 'nonce.error' || typeof e.account !== 'string') return;
    const a = supervisor.currentConfig().accounts.get(e.account);
    const broker = a ? brokerOf(a) : null;
    if (broker) void offsets.checkNow(broker);
  });
  const suspects = new SuspectScanner(events, () => keys.secretValues());
  supervisor.onLine((account, line) => suspects.onLine(account, line));
  return { supervisor, hunter, offsets, ...observers(b, s, supervisor, hunter, offsets) };
}

/** What watches the daemon itself: the disk, the metrics, the alerts and /health. */
function observers(b: Basics, s: Stores, supervisor: Supervisor, hunter: DuplicateHunter, offsets: ClockService): Pick<Services, 'disk' | 'metrics' | 'alerts' | 'health'> {
  const { config, logger, clock, settings } = b;
  const { events, keys, pg } = s;
  const disk = new DiskWatcher(settings.dataDir, () => supervisor.currentConfig().daemon.minFreeBytes, events, logger.child({ module: 'disk' }));
  disk.check();
  const metrics = new Metrics({ supervisor, keys, events, version: VERSION, pg: pg?.locks ?? null, clock: offsets });
  const alerts = new AlertService(config, {
    outbox: new AlertOutbox(s.db),
    logger: logger.child({ module: 'alerts' }),
    daemonName: s.name,
    enrich: (e) => fatalFacts(supervisor, b.secrets.fn, e),
    mask: b.secrets.fn,
    onResult: (alert, outcome) => metrics.alertsSent.inc({ alert, outcome }),
  });
  events.setOutbox(alerts);
  const health = new HealthService({
    meta: new Meta(s.db),
    events,
    locks: s.locks,
    daemonLock: b.daemonLock,
    supervisor,
    version: VERSION,
    startedAt: clock.now(),
    now: () => clock.now(),
    extraChecks: async () => [
      duplicatesCheck(hunter),
      await keysCheck(keys),
      alertsCheck(alerts),
      disk.healthCheck(),
      clockCheck(offsets.list().offsets, supervisor.currentConfig().clock.maxOffsetMs),
      ...(pg ? [pg.healthCheck()] : []),
    ],
  });
  events.prune(config.daemon.events);
  return { disk, metrics, alerts, health };
}

/** A reload: synchronous from reading to applying, so two reloads can never interleave. */
function reloader(b: Basics, s: Stores, svc: Services): () => Promise<{ accounts: string[] }> {
  const { settings, logger } = b;
  return async () => {
    if (b.opts.config && !existsSync(settings.configPath)) throw Errors.badRequest('This daemon was given its config as an object; there is no file to reload.');
    let next;
    try {
      next = loadConfigFile(settings.configPath, b.secretEnv);
    } catch (err) {
      if (err instanceof ConfigError) throw Errors.invalidConfig(err.problems);
      throw err;
    }
    if (JSON.stringify(next.daemon) !== JSON.stringify(svc.supervisor.currentConfig().daemon)) {
      logger.warn('the daemon section changed: listen, intervals, allowedHosts and retention take effect at the next daemon start');
    }
    svc.supervisor.applyConfig(next);
    svc.alerts.setConfig(next);
    s.refreshSecrets(next);
    logger.info({ accounts: [...next.accounts.keys()] }, 'config reloaded');
    return { accounts: [...next.accounts.keys()] };
  };
}

async function serve(b: Basics, s: Stores, svc: Services, reloadConfig: () => Promise<{ accounts: string[] }>): Promise<{ app: Server; url: string; port: number }> {
  const listen = effectiveListen(b.settings, b.config);
  const { supervisor } = svc;
  const app = await buildServer({
    clock: svc.offsets,
    supervisor,
    keys: s.keys,
    events: s.events,
    health: svc.health,
    token: s.token,
    listenHost: listen.host,
    allowedHosts: b.config.daemon.allowedHosts,
    logger: b.logger,
    version: VERSION,
    reloadConfig,
    leases: () => s.pg?.locks.leases() ?? [],
    metrics: svc.metrics,
    alerts: svc.alerts,
    mask: b.secrets.fn,
    // SPEC 18: named tokens and roles (a reload takes effect at once), the client address behind a proxy.
    roleTokens: () => namedTokens(supervisor.currentConfig()),
    trustProxy: b.config.daemon.trustProxy,
    now: () => b.clock.mono(),
  });
  await app.listen({ host: listen.host, port: listen.port });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : listen.port;
  const urlHost = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
  return { app, url: `http://${urlHost === '0.0.0.0' ? '127.0.0.1' : urlHost}:${port}`, port };
}

/** Health snapshots, event pruning, the hunter's scans, clock checks, alert delivery, the stale-lock sweep. */
function startPeriodic(b: Basics, s: Stores, svc: Services, p: Processes): NodeJS.Timeout[] {
  const { config, logger, clock } = b;
  const { supervisor } = svc;
  const timers: NodeJS.Timeout[] = [];
  const every = (ms: number, fn: () => void) => {
    const t = setInterval(fn, ms);
    t.unref();
    timers.push(t);
  };
  every(config.daemon.healthIntervalMs, () => {
    svc.disk.check();
    // A snapshot still under way when the daemon stops must not write to a closed database.
    void svc.health.snapshot().then((snap) => s.db.open && s.events.emit('health', { ...snap }));
  });
  every(60_000, () => s.events.prune(supervisor.currentConfig().daemon.events));
  p.spawner.warm();
  svc.hunter.start(config.daemon.scanIntervalMs);
  svc.offsets.start();
  svc.alerts.start();
  const sweepLog = new FailureLog(logger, 'stale lock sweep', () => clock.now());
  every(config.daemon.scanIntervalMs, () => {
    supervisor.sweepStaleLocks().then(
      () => sweepLog.ok(),
      (err: unknown) => sweepLog.failed(err),
    );
  });
  return timers;
}

/** The one shutdown (a second call gets the first's promise): bots first, then everything in reverse. */
function shutdownOf(b: Basics, s: Stores, svc: Services, p: Processes, app: Pick<Server, 'close'>, timers: NodeJS.Timeout[]): (mode?: ShutdownMode) => Promise<void> {
  const { settings, logger } = b;
  let shuttingDown: Promise<void> | null = null;
  return (mode?: ShutdownMode): Promise<void> => {
    shuttingDown ??= (async () => {
      for (const t of timers) clearInterval(t);
      svc.hunter.stop();
      // What needs the state database (a bot's stopping state commits before its signal leaves).
      // If it fails (storage gone), the bots are left running for the next daemon to adopt, and
      // what the daemon holds is still let go of, below.
      const stopBots = (async () => {
        const m: ShutdownMode = mode ?? (settings.leaveRunning ? 'leave-running' : svc.supervisor.currentConfig().daemon.onShutdown);
        s.events.emit('daemon.stopping', { mode: m });
        logger.info({ mode: m }, 'daemon stopping');
        await svc.supervisor.shutdown(m);
        // Kills of copies under way finish (their events need the database); no scan starts after this.
        await svc.hunter.close();
      })();
      const errors: unknown[] = [];
      await stopBots.catch((err: unknown) => errors.push(err));
      const step = async (what: () => unknown) => {
        try {
          await what();
        } catch (err) {
          errors.push(err);
        }
      };
      // After a failed stop the bots are left running, let go of (their watches, timers, tailers),
      // and the hunter's kills under way still end before the database closes.
      if (errors.length > 0) {
        await step(() => svc.supervisor.shutdown('leave-running'));
        await step(() => svc.hunter.close());
      }
      p.spawner.close();
      svc.alerts.stop();
      svc.offsets.stop();
      await step(() => app.close());
      await step(() => rmSync(path.join(settings.dataDir, 'daemon.json'), { force: true }));
      svc.health.close();
      p.exits.close();
      p.oom.close();
      await step(() => s.pg?.close());
      await step(() => s.events.flush());
      await step(() => s.db.close());
      b.daemonLock.release();
      if (errors.length > 0) {
        for (const err of errors.slice(1)) logger.error({ err }, 'shutdown: a further failure');
        throw errors[0];
      }
      logger.info('daemon stopped');
      logger.flush?.();
    })();
    return shuttingDown;
  };
}

function handleSignals(logger: Logger, shutdown: (mode?: ShutdownMode) => Promise<void>, reloadConfig: () => Promise<unknown>): void {
  const onSignal = (sig: NodeJS.Signals) => {
    logger.info({ signal: sig }, 'signal received');
    void shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('SIGHUP', () => {
    reloadConfig().catch((err: unknown) => logger.error({ err }, 'config reload refused; nothing changed'));
  });
}

/**
 * The address file says "ready" to the CLI and to service scripts: written only once the signal
 * handlers are in place (a SIGHUP or SIGTERM sent on seeing it must reach them, not Node's default).
 */
function announce(b: Basics, s: Stores, o: { url: string; port: number; reconcileMs: number }): void {
  const { settings, config, logger } = b;
  const host = effectiveListen(settings, config).host;
  writeFileSync(path.join(settings.dataDir, 'daemon.json'), JSON.stringify({ pid: process.pid, url: o.url, host, port: o.port, daemonId: s.daemonId, version: VERSION }, null, 2) + '\n', { mode: 0o600 });
  s.events.emit('daemon.started', { pid: process.pid, version: VERSION, url: o.url, daemonId: s.daemonId, name: s.name });
  logger.info(
    { url: o.url, dataDir: settings.dataDir, config: config.source, accounts: [...config.accounts.keys()], startupMs: Math.round(performance.now()), reconcileMs: Math.round(o.reconcileMs) },
    'botwarden listening',
  );
}

/**
 * The .env file (a missing one is fine) under the real environment: the real
 * environment wins, as with dotenv's default. Loaded into a private object,
 * never into process.env, so no bot inherits every secret.
 */
function loadEnvFile(file: string, env: NodeJS.ProcessEnv, logger: Logger): { dotenv: Record<string, string>; merged: NodeJS.ProcessEnv } {
  let parsed: Record<string, string> = {};
  try {
    parsed = parseDotenv(readFileSync(file));
    logger.info({ file, variables: Object.keys(parsed).length }, 'env file loaded');
    if ((statSync(file).mode & 0o077) !== 0) logger.warn({ file }, 'the env file holds API secrets but other users can read it: chmod 600 it');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  // Kept apart too: a bot gets only the .env variables its account names (SPEC 15).
  return { dotenv: parsed, merged: { ...parsed, ...env } };
}

/**
 * A periodic task's failures, logged without flooding (a database outage fails the sweep every
 * second): the first failure with its error, then a summary at most once a minute (how many, the
 * last message, no stack), and the recovery once. A change of error message is logged at once.
 */
export class FailureLog {
  private failing = false;
  private count = 0;
  private since = 0;
  private lastSummary = 0;
  private lastMessage = '';

  constructor(
    private readonly logger: Pick<Logger, 'error' | 'warn' | 'info'>,
    private readonly what: string,
    private readonly now: () => number,
    private readonly summaryMs = 60_000,
  ) {}

  failed(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    const t = this.now();
    this.count++;
    if (!this.failing) {
      this.failing = true;
      this.since = t;
      this.lastSummary = t;
      this.count = 1;
      this.lastMessage = message;
      this.logger.error({ err }, `${this.what} failed; failures are summarised once a minute until it works again`);
      return;
    }
    if (message !== this.lastMessage) {
      this.lastMessage = message;
      this.lastSummary = t;
      this.logger.error({ error: message, failures: this.count }, `${this.what} still failing, with a new error`);
      return;
    }
    if (t - this.lastSummary >= this.summaryMs) {
      this.lastSummary = t;
      this.logger.error({ error: message, failures: this.count, failingForMs: t - this.since }, `${this.what} still failing`);
    }
  }

  ok(): void {
    if (!this.failing) return;
    this.failing = false;
    this.logger.info({ failures: this.count, failedForMs: this.now() - this.since }, `${this.what} works again`);
  }
}

export type { DaemonLock };
