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
import type { Config } from './config/schema.js';
import { effectiveListen, resolveSettings, type Flags, type Settings } from './config/settings.js';
import { acquireDaemonLock, type DaemonLock } from './db/daemon-lock.js';
import { SqliteLockBackend } from './db/locks.js';
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
import { brokerOf, ClockService } from './monitor/clock.js';
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

export async function startDaemon(opts: DaemonOptions = {}): Promise<Daemon> {
  assertSupportedPlatform();
  const env = opts.env ?? process.env;
  const settings = resolveSettings(opts.flags ?? {}, env, opts.cwd);
  // Every secret the daemon holds, masked in all text that leaves it (SPEC 15): its log included.
  const secrets = new SecretMask();
  const logger = opts.logger ?? createLogger(settings.logLevel, opts.logDestination, secrets.fn);
  // The env file first: config strings may say ${NAME} and take it from there.
  const { dotenv, merged: secretEnv } = loadEnvFile(settings.envFile, env, logger);
  secrets.set(Object.values(dotenv));
  const config = opts.config ?? loadConfigFile(settings.configPath, secretEnv);
  const listen = effectiveListen(settings, config);
  const clock = opts.clock ?? realClock;

  mkdirSync(settings.dataDir, { recursive: true, mode: 0o700 });
  const logsDir = path.join(settings.dataDir, 'logs');
  mkdirSync(logsDir, { recursive: true, mode: 0o700 });
  const daemonLock = acquireDaemonLock(settings.dataDir);

  let db: DB | undefined;
  let pg: PgMode | null = null;
  try {
    db = openDatabase(path.join(settings.dataDir, 'botwarden.db'));
    const { token } = ensureToken(settings.dataDir, settings.token);
    const daemonId = randomUUID().slice(0, 8);
    const name = config.daemon.name ?? hostname();
    const holder = `${daemonId}@${hostname()}`;
    const group = new CommitGroup(db, (err) => logger.error({ err }, 'a group commit failed: the writes of that turn are lost (their events are counted)'));
    const events = new EventStore(db, () => clock.now(), logger.child({ module: 'events' }), group);
    const registry = new Registry(db);
    // Loaded only in PostgreSQL mode: pg is ~10 MB the SQLite daemon never needs.
    pg = config.lock.backend === 'postgres' ? await (await import('./pg-mode.js')).openPgMode(config, { holderId: `${name}/${daemonId}`, name, host: hostname(), logger, dataDir: settings.dataDir, bootClock: opts.bootClock }) : null;
    const locks = pg?.locks ?? new SqliteLockBackend(db, () => clock.now());
    const keys = new KeyPool(config, secretEnv, locks, new KeyStats(db), () => clock.now());
    // Masked: key values, the API token and the named ones (SPEC 18), webhook URLs and chat ids, the database password, every .env value.
    const refreshSecrets = (cfg: Config) => {
      keys.setOtherSecrets([token, ...configSecrets(cfg), ...Object.values(dotenv)]);
      secrets.set(keys.secretValues());
    };
    refreshSecrets(config);
    events.setMask(secrets.fn);
    // Bots are watched by an identity poll when no spawner of ours reaps them (adopted, or their spawner died).
    // Exits found together (a shutdown) are recorded in one commit.
    const exits = new ExitPoller(clock, undefined, () => events.begin());
    const spawner = new Spawner((pid, startTicks) => exits.watch(pid, startTicks), logger.child({ module: 'spawner' }), () => events.begin());
    // The kernel log tells an OOM kill from another SIGKILL (lastExit.cause); unreadable: never `oom`.
    const oom = new OomLog();
    oom.open();
    const host = new LinuxHost(clock, { spawn: spawner.spawn, exits, oom });
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
      host,
      // The duplicate hunter is made below (it needs the supervisor): the gate forwards to it.
      gate: { clearBeforeStart: (account): Promise<void> => hunter.clearBeforeStart(account) },
      registry,
      events,
      locks,
      clock,
      logger,
      daemonId,
      holder,
      logsDir,
      // SPEC 18: the variables of auth.tokens are the API's, never a bot's.
      env: withoutTokenVariables(env, config),
      dotenv,
      keys,
      scope: settings.scope,
      ...(pg ? { wrapCommand: pg.wrapCommand } : {}),
    });
    pg?.attach(supervisor, events);
    // This machine's clock against the exchanges' (SPEC 17): measured every checkIntervalMs and on a nonce error.
    const offsets = new ClockService(() => supervisor.currentConfig());
    const hunter: DuplicateHunter = new DuplicateHunter(supervisor, events, logger.child({ module: 'duplicates' }), () => keys.secretValues(), clock, settings.scope ?? null);
    hunter.spare(() => [spawner.pid, pg?.watchdogPid]);
    hunter.watchKeys(keys);
    // The clock is measured at once on a nonce error (rate-limited per exchange), so a trip finds it fresh.
    events.subscribe((e) => {
      if (e.type !== 'nonce.error' || typeof e.account !== 'string') return;
      const a = supervisor.currentConfig().accounts.get(e.account);
      const broker = a ? brokerOf(a) : null;
      if (broker) void offsets.checkNow(broker);
    });
    const startedAt = clock.now();
    const disk = new DiskWatcher(settings.dataDir, () => supervisor.currentConfig().daemon.minFreeBytes, events, logger.child({ module: 'disk' }));
    disk.check();
    const metrics = new Metrics({ supervisor, keys, events, version: VERSION, pg: pg?.locks ?? null, clock: offsets });
    const alerts = new AlertService(config, {
      outbox: new AlertOutbox(db),
      logger: logger.child({ module: 'alerts' }),
      daemonName: name,
      enrich: (e) => fatalFacts(supervisor, secrets.fn, e),
      mask: secrets.fn,
      onResult: (alert, outcome) => metrics.alertsSent.inc({ alert, outcome }),
    });
    events.setOutbox(alerts);
    const health = new HealthService({
      meta: new Meta(db),
      events,
      locks,
      daemonLock,
      supervisor,
      version: VERSION,
      startedAt,
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

    const suspects = new SuspectScanner(events, () => keys.secretValues());
    supervisor.onLine((account, line) => suspects.onLine(account, line));

    events.prune(config.daemon.events);
    const r0 = performance.now();
    await reconcile({ supervisor, registry, locks, events, logger, clock });
    const reconcileMs = performance.now() - r0;

    // Synchronous from reading to applying, so two reloads can never interleave.
    const reloadConfig = async (): Promise<{ accounts: string[] }> => {
      if (opts.config && !existsSync(settings.configPath)) throw Errors.badRequest('This daemon was given its config as an object; there is no file to reload.');
      let next;
      try {
        next = loadConfigFile(settings.configPath, secretEnv);
      } catch (err) {
        if (err instanceof ConfigError) throw Errors.invalidConfig(err.problems);
        throw err;
      }
      if (JSON.stringify(next.daemon) !== JSON.stringify(supervisor.currentConfig().daemon)) {
        logger.warn('the daemon section changed: listen, intervals, allowedHosts and retention take effect at the next daemon start');
      }
      supervisor.applyConfig(next);
      alerts.setConfig(next);
      refreshSecrets(next);
      logger.info({ accounts: [...next.accounts.keys()] }, 'config reloaded');
      return { accounts: [...next.accounts.keys()] };
    };

    const app = await buildServer({
      clock: offsets,
      supervisor,
      keys,
      events,
      health,
      token,
      listenHost: listen.host,
      allowedHosts: config.daemon.allowedHosts,
      logger,
      version: VERSION,
      reloadConfig,
      leases: () => pg?.locks.leases() ?? [],
      metrics,
      alerts,
      mask: secrets.fn,
      // SPEC 18: named tokens and roles (a reload takes effect at once), the client address behind a proxy.
      roleTokens: () => namedTokens(supervisor.currentConfig()),
      trustProxy: config.daemon.trustProxy,
      now: () => clock.mono(),
    });
    await app.listen({ host: listen.host, port: listen.port });
    const addr = app.server.address();
    const port = typeof addr === 'object' && addr ? addr.port : listen.port;
    const urlHost = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
    const url = `http://${urlHost === '0.0.0.0' ? '127.0.0.1' : urlHost}:${port}`;

    const timers: NodeJS.Timeout[] = [];
    const every = (ms: number, fn: () => void) => {
      const t = setInterval(fn, ms);
      t.unref();
      timers.push(t);
    };
    every(config.daemon.healthIntervalMs, () => {
      disk.check();
      void health.snapshot().then((snap) => events.emit('health', { ...snap }));
    });
    every(60_000, () => events.prune(supervisor.currentConfig().daemon.events));
    spawner.warm();
    hunter.start(config.daemon.scanIntervalMs);
    offsets.start();
    alerts.start();
    const sweepLog = new FailureLog(logger, 'stale lock sweep', () => clock.now());
    every(config.daemon.scanIntervalMs, () => {
      supervisor.sweepStaleLocks().then(
        () => sweepLog.ok(),
        (err: unknown) => sweepLog.failed(err),
      );
    });

    let shuttingDown: Promise<void> | null = null;
    const shutdown = (mode?: ShutdownMode): Promise<void> => {
      shuttingDown ??= (async () => {
        const m: ShutdownMode = mode ?? (settings.leaveRunning ? 'leave-running' : supervisor.currentConfig().daemon.onShutdown);
        events.emit('daemon.stopping', { mode: m });
        logger.info({ mode: m }, 'daemon stopping');
        for (const t of timers) clearInterval(t);
        await hunter.close();
        await supervisor.shutdown(m);
        spawner.close();
        alerts.stop();
        offsets.stop();
        await app.close();
        rmSync(path.join(settings.dataDir, 'daemon.json'), { force: true });
        health.close();
        exits.close();
        oom.close();
        await pg?.close();
        events.flush();
        db?.close();
        daemonLock.release();
        logger.info('daemon stopped');
        logger.flush?.();
      })();
      return shuttingDown;
    };

    if (opts.handleSignals) {
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

    // The address file says "ready" to the CLI and to service scripts: only once the signal handlers
    // are in place (a SIGHUP or SIGTERM sent on seeing it must reach them, not Node's default).
    writeFileSync(path.join(settings.dataDir, 'daemon.json'), JSON.stringify({ pid: process.pid, url, host: listen.host, port, daemonId, version: VERSION }, null, 2) + '\n', { mode: 0o600 });
    events.emit('daemon.started', { pid: process.pid, version: VERSION, url, daemonId, name });
    logger.info(
      { url, dataDir: settings.dataDir, config: config.source, accounts: [...config.accounts.keys()], startupMs: Math.round(performance.now()), reconcileMs: Math.round(reconcileMs) },
      'botwarden listening',
    );
    return { settings, supervisor, events, db, logger, token, address: { host: listen.host, port }, url, daemonId, shutdown };
  } catch (err) {
    await pg?.close();
    db?.close();
    daemonLock.release();
    throw err;
  }
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
