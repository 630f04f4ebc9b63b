/**
 * Wiring of PostgreSQL mode: the lease backend, bots that die with the daemon
 * (`setpriv --pdeathsig KILL`), the watchdog against a frozen daemon, and
 * self-fencing (a lost lease stops its bot with reason `fence`).
 *
 * The watchdog's heartbeat lists each bot's process tree for as long as it
 * lives (from its spawn until its whole tree is gone, also while a stop or a
 * fence runs), with its lease's kill deadline: a lost lease keeps the deadline
 * it had until the tree is gone, so a fence waiting behind a slow stop cannot
 * leave the bot trading past it.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from './config/schema.js';
import { PgLockBackend } from './db/pg-locks.js';
import { daemonUid } from './identity.js';
import { MIGRATIONS_DIR } from './paths.js';
import type { EventStore } from './events/store.js';
import type { Check } from './monitor/health.js';
import type { BotController } from './supervisor/bot.js';
import type { Supervisor } from './supervisor/supervisor.js';
import { Watchdog, type WatchedGroup } from './host/watchdog-client.js';

export interface PgMode {
  locks: PgLockBackend;
  wrapCommand: (command: string[]) => string[];
  /** After the supervisor exists: fencing and the watchdog. */
  attach(supervisor: Supervisor, events: EventStore): void;
  close(): Promise<void>;
  /** The watchdog's pid while it runs (the duplicate hunter spares it). */
  readonly watchdogPid: number | undefined;
  /** False while the watchdog is not running (died, restart pending). */
  watchdogHealthy(): boolean;
  /** For /health: failing while the watchdog is down. */
  healthCheck(): Check;
}

/** A bot's process tree: set from its spawn until the whole tree is gone (BotController.tree). */
type Tree = { pgid: number; startTicks: number | null } | null;

/** The bot's tree; before BotController has `tree`, its live instance. */
function treeOf(b: BotController): Tree {
  const t = (b as { tree?: Tree }).tree;
  if (t !== undefined) return t;
  const inst = b.live;
  return inst ? { pgid: inst.pgid, startTicks: inst.startTicks } : null;
}

/** The watchdog's groups: every bot's tree with its lease's kill deadline (held, or lost and kept). */
export function watchedGroups(bots: readonly BotController[], locks: Pick<PgLockBackend, 'killDeadline' | 'processGone'>): WatchedGroup[] {
  const out: WatchedGroup[] = [];
  for (const b of bots) {
    const tree = treeOf(b);
    if (!tree) {
      locks.processGone(b.id);
      continue;
    }
    const killAt = locks.killDeadline(b.id);
    if (killAt !== null) out.push({ pgid: tree.pgid, startTicks: tree.startTicks, killAt });
  }
  return out;
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
      locks.onLost((account, token, _reason, urgent) => {
        supervisor.fence(account, token, urgent).catch((err: unknown) => logger.error({ err, account }, 'fencing failed'));
      });
      // After the fences it caused (already under way): the wake is said, and can be alerted on.
      locks.onWake((w) => {
        events.emit('daemon.woke', { sleptMs: w.sleptMs, fenced: w.fenced });
        watchdog?.beat();
      });
      watchdog = new Watchdog(
        () => watchedGroups(supervisor.all(), locks),
        o.logger.child({ module: 'watchdog' }),
        Math.max(50, Math.min(250, Math.floor(config.lock.renewMs / 2))),
        () => locks.now(),
        {
          lost: (w) => events.emit('watchdog.lost', { pid: w.pid, code: w.code, signal: w.signal, restartInMs: w.restartInMs }),
          restarted: (w) => events.emit('watchdog.restarted', { pid: w.pid, downMs: w.downMs }),
        },
        Math.max(100, Math.min(1000, config.lock.renewMs)),
      );
      watchdog.start();
      // A bot is watched from its spawn on, before its lease records it (a daemon frozen during
      // the attach round trip must not leave it unwatched: issue 20, item 3).
      supervisor.onSpawn(() => watchdog?.beat());
      // A new or ended bot is told to the watchdog at once, not at the next beat.
      events.subscribe((e) => {
        if (e.type === 'bot.starting' || e.type === 'bot.exited') watchdog?.beat();
      });
    },
    get watchdogPid() {
      return watchdog?.pid;
    },
    watchdogHealthy: () => watchdog?.healthy ?? false,
    healthCheck(): Check {
      if (watchdog?.healthy) return { name: 'watchdog', status: 'ok', detail: `pid ${watchdog.pid}${watchdog.restarts ? `, restarted ${watchdog.restarts} time(s)` : ''}` };
      const since = watchdog?.downSince;
      const down = since != null ? ` for ${Math.round(performance.now() - since)} ms` : '';
      return { name: 'watchdog', status: 'failing', detail: `the watchdog is not running${down}: a frozen daemon would leave its bots trading past their lease; restart pending` };
    },
    async close() {
      watchdog?.stop();
      await locks.close();
    },
  };
}
