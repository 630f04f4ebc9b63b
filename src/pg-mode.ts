/**
 * Wiring of PostgreSQL mode: the lease backend, bots that die with the daemon
 * (`setpriv --pdeathsig KILL`), the watchdog against a frozen daemon, and
 * self-fencing (a lost lease stops its bot with reason `fence`).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from './config/schema.js';
import { PgLockBackend } from './db/pg-locks.js';
import { daemonUid } from './identity.js';
import { MIGRATIONS_DIR } from './paths.js';
import type { EventStore } from './events/store.js';
import type { Supervisor } from './supervisor/supervisor.js';
import { Watchdog } from './supervisor/watchdog.js';

export interface PgMode {
  locks: PgLockBackend;
  wrapCommand: (command: string[]) => string[];
  /** After the supervisor exists: fencing and the watchdog. */
  attach(supervisor: Supervisor, events: EventStore): void;
  close(): Promise<void>;
  /** The watchdog's pid while it runs (the duplicate hunter spares it). */
  readonly watchdogPid: number | undefined;
}

const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));

export interface PgModeOptions {
  holderId: string;
  name: string;
  host: string;
  logger: Logger;
  dataDir: string;
  /** Boot-time ms (CLOCK_BOOTTIME); tests inject one to simulate a wake. */
  bootClock?: (() => number) | undefined;
}

export async function openPgMode(config: Config, o: PgModeOptions): Promise<PgMode> {
  if (!SETPRIV) {
    throw new Error("postgres mode needs setpriv (util-linux) so that bots die with the daemon; install util-linux, or use lock.backend: sqlite");
  }
  const setpriv = SETPRIV;
  const logger = o.logger.child({ module: 'pg-locks' });
  let currentConfig = () => config;
  const locks = new PgLockBackend({
    url: config.lock.url ?? '',
    leaseMs: config.lock.leaseMs,
    renewMs: config.lock.renewMs,
    holderId: o.holderId,
    name: o.name,
    host: o.host,
    uid: daemonUid(o.dataDir),
    ...(o.bootClock ? { boot: o.bootClock } : {}),
    logger,
    migrationsDir: path.join(MIGRATIONS_DIR, 'postgres'),
    graceOf: (account) => currentConfig().accounts.get(account)?.stop.graceMs ?? 30_000,
  });
  await locks.start();
  let watchdog: Watchdog | null = null;
  return {
    locks,
    // The bot's own pid stays (setpriv execs); SIGKILL reaches it when its parent dies: the
    // spawner, which exits as soon as the daemon's channel closes (the daemon itself without one).
    wrapCommand: ([file, ...args]) => [setpriv, '--pdeathsig', 'KILL', '--', file === 'node' ? process.execPath : (file ?? ''), ...args],
    attach(supervisor, events) {
      currentConfig = () => supervisor.currentConfig();
      locks.onLost((account, token) => {
        supervisor.fence(account, token).catch((err: unknown) => logger.error({ err, account }, 'fencing failed'));
      });
      // After the fences it caused (already under way): the wake is said, and can be alerted on.
      locks.onWake((w) => {
        events.emit('daemon.woke', { sleptMs: w.sleptMs, fenced: w.fenced });
        watchdog?.beat();
      });
      watchdog = new Watchdog(
        () =>
          supervisor.all().flatMap((b) => {
            const inst = b.live;
            const killAt = locks.killDeadline(b.id);
            return inst && killAt !== null ? [{ pgid: inst.pgid, startTicks: inst.startTicks, killAt }] : [];
          }),
        o.logger.child({ module: 'watchdog' }),
        Math.max(50, Math.min(250, Math.floor(config.lock.renewMs / 2))),
        () => locks.now(),
      );
      watchdog.start();
      // A new or ended bot is told to the watchdog at once, not at the next beat.
      events.subscribe((e) => {
        if (e.type === 'bot.starting' || e.type === 'bot.exited') watchdog?.beat();
      });
    },
    get watchdogPid() {
      return watchdog?.pid;
    },
    async close() {
      watchdog?.stop();
      await locks.close();
    },
  };
}
