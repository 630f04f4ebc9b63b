/**
 * The unit layer's world: the real Supervisor, BotController, lease, registry and event store on
 * an in-memory SQLite database, a FakeHost for the processes and a ManualClock for time. No fork,
 * no signal, no /proc read, no real timer decides anything: a case runs in milliseconds.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { ManualClock } from '../../src/clock.js';
import { parseConfig } from '../../src/config/load.js';
import type { Account, Config } from '../../src/config/schema.js';
import { KeyStats } from '../../src/db/key-stats.js';
import { SqliteLockBackend } from '../../src/db/locks.js';
import { openDatabase, type DB } from '../../src/db/open.js';
import { Registry } from '../../src/db/registry.js';
import { Errors } from '../../src/errors.js';
import { EventStore } from '../../src/events/store.js';
import { KeyPool } from '../../src/keys/pool.js';
import { reconcile } from '../../src/supervisor/reconcile.js';
import { Supervisor } from '../../src/supervisor/supervisor.js';
import type { StartGate } from '../../src/supervisor/types.js';
import { FakeHost, type FakeProc } from './fake-host.js';

const BOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../fixtures/bot.js');
const logger = pino({ level: 'silent' });

/**
 * The duplicate hunter's gate over the fake host: copies are the account's live processes that
 * no controller started. `kill` ends them (signal, then gone), `report` refuses the start.
 */
export class FakeGate implements StartGate {
  passes = 0;
  constructor(private readonly host: FakeHost) {}

  clearBeforeStart(account: Account): Promise<void> {
    this.passes++;
    const copies = this.host.live(account.id).filter((p) => p.copy);
    if (copies.length === 0) return Promise.resolve();
    if (account.duplicates === 'report') return Promise.reject(Errors.duplicateRunning(account.id, copies.map((p) => p.pid)));
    for (const c of copies) c.die({ code: null, signal: account.stop.signal });
    return Promise.resolve();
  }
}

export interface World {
  clock: ManualClock;
  host: FakeHost;
  gate: FakeGate;
  db: DB;
  events: EventStore;
  registry: Registry;
  locks: SqliteLockBackend;
  sup: Supervisor;
  config: Config;
  logsDir: string;
  /** Runs the clock forward (timers fire in order; awaits between them settle). */
  run(ms: number): Promise<void>;
  /** Lets pending promise chains settle without moving time. */
  settle(): Promise<void>;
  /** Event types so far, oldest first (optionally of one account). */
  types(account?: string): string[];
  /** A new daemon on the same database and host (the last one SIGKILLed: its bots live on). */
  reboot(accounts?: Record<string, Record<string, unknown>>): Promise<World>;
  /** The account's live processes started by its controller (not copies). */
  running(account: string): FakeProc[];
}

/**
 * Every world made since the last call, closed (its in-memory database, its logs dir): each test
 * file runs it after each test. (Not registered here: a worker runs file after file and loads this
 * module once.)
 */
const open = new Set<World>();
export function closeWorlds(): void {
  for (const x of open) {
    void x.sup.shutdown('leave-running'); // lets go of its bots (their tailers' watches) at once
    if (x.db.open) x.db.close();
    rmSync(x.logsDir, { recursive: true, force: true });
  }
  open.clear();
}

/** The account's lock row in this world, or null. */
export const lockOf = async (x: World, account: string) => (await x.locks.list()).find((l) => l.account === account) ?? null;

export function config(accounts: Record<string, Record<string, unknown>>, extra: Record<string, unknown> = {}): Config {
  const withCommand = Object.fromEntries(Object.entries(accounts).map(([id, a]) => [id, { command: ['node', BOT], startMs: 100, ...a }]));
  return parseConfig({ daemon: { minFreeBytes: 0 }, ...extra, accounts: withCommand }, { baseDir: path.dirname(BOT) });
}

export async function world(accounts: Record<string, Record<string, unknown>>, o: { extra?: Record<string, unknown>; env?: NodeJS.ProcessEnv; from?: World } = {}): Promise<World> {
  const clock = o.from?.clock ?? new ManualClock();
  // A reboot: the last daemon is dead (it hears nothing more), its processes live on.
  o.from?.host.crashDaemon();
  const host = new FakeHost(clock, o.from?.host.m);
  const db = o.from?.db ?? openDatabase(':memory:');
  const logsDir = o.from?.logsDir ?? mkdtempSync(path.join(tmpdir(), 'botwarden-unit-'));
  const cfg = config(accounts, o.extra);
  const events = new EventStore(db, () => clock.now(), logger);
  const registry = new Registry(db);
  const locks = new SqliteLockBackend(db, () => clock.now());
  const daemonClock = host.clock;
  const env = o.env ?? {};
  const keys = new KeyPool(cfg, env, locks, new KeyStats(db), () => clock.now());
  const gate = new FakeGate(host);
  const daemonId = `unit${Math.floor(Math.random() * 1e6)}`;
  const sup = new Supervisor(cfg, { registry, events, locks, clock: daemonClock, logger, daemonId, holder: `${daemonId}@test`, logsDir, env, keys, host, gate });
  const settle = async () => {
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  };
  const w: World = {
    clock,
    host,
    gate,
    db,
    events,
    registry,
    locks,
    sup,
    config: cfg,
    logsDir,
    run: async (ms) => {
      await clock.run(ms, 5);
      await settle();
    },
    settle,
    types: (account) => events.history(0, 100_000, account === undefined ? {} : { account }).map((e) => e.type),
    reboot: async (next) => world(next ?? accounts, { ...o, from: w }),
    running: (account) => host.live(account).filter((p) => !p.copy),
  };
  await reconcile({ supervisor: sup, registry, locks, events, logger, clock: daemonClock });
  open.add(w);
  return w;
}
