/**
 * Account locks. The interface is what a supervisor needs from any backend;
 * SQLite implements it here for one machine, PostgreSQL leases for several
 * (pg-locks.ts). Methods are async for that reason; the SQLite one completes
 * synchronously inside.
 */
import { isDiskFull, LockBackendError } from '../errors.js';
import type { DB } from './open.js';

export interface LockRow {
  account: string;
  holder: string;
  /** The holder's machine (PostgreSQL mode, where holders span machines). */
  host?: string | undefined;
  instanceId: string | null;
  pid: number | null;
  startTicks: number | null;
  brokerUsername: string;
  createdAt: string;
  token: number;
}

export interface AcquireRequest {
  account: string;
  holder: string;
  brokerUsername: string;
  /** Decides whether an existing row is stale (its process dead or its pid reused). */
  isStale: (row: LockRow) => boolean;
  /**
   * Keys to lease with the lock, in order of preference (missing ones already left out).
   * The first one neither leased nor cooling is taken in the same transaction.
   */
  keys?: readonly string[] | undefined;
  /** Now, in ms (cooldowns end on this clock). */
  nowMs?: number;
}

export type AcquireResult =
  | { ok: true; lock: LockRow; staleRemoved: LockRow | null; keyId: string | null }
  | { ok: false; heldBy: LockRow }
  | { ok: false; noFreeKey: true };

export interface KeyLease {
  keyId: string;
  account: string;
  lockToken: number;
}

/**
 * What a supervisor needs from a lock backend: nine calls, implemented by SQLite (one machine,
 * db/locks.ts) and PostgreSQL (several machines, db/pg-locks.ts). A backend that cannot be used
 * throws LockBackendError; a full disk throws its own coded error.
 */
export interface LockBackend {
  readonly kind: 'sqlite' | 'postgres';
  /** True when the row was written by this daemon or an earlier run of it (boot may clean it up). */
  isOurs(row: LockRow): boolean;
  /** False once a lease we were granted is known lost (PostgreSQL: not renewed in time). */
  stillHeld(account: string, token: number): boolean;
  /**
   * True when a process with this instance id runs under a live lease of any daemon (never a
   * duplicate). `youngOf`: the process is seconds old and says it is this account's: then any live
   * lease of the account covers it too, since its daemon may not have recorded the new instance yet
   * (the spawn is recorded after it happens, a database round trip later).
   */
  isLeasedInstance(instanceId: string, youngOf?: string | null): Promise<boolean>;
  acquire(req: AcquireRequest): Promise<AcquireResult>;
  /** Records the spawned process on the lock we hold (fenced by token). */
  attach(account: string, token: number, proc: { instanceId: string; pid: number; startTicks: number | null }): Promise<void>;
  /** Releases our lock; a no-op when the token no longer matches. */
  release(account: string, token: number): Promise<boolean>;
  get(account: string): Promise<LockRow | null>;
  list(): Promise<LockRow[]>;
  /** How many lock rows exist (cheap: the periodic sweep lists them only when some are not ours). */
  count(): Promise<number>;
  /** Throws when the backend cannot be used (for /health). */
  check(): Promise<void>;
  /**
   * Rotation: under the lock we hold, puts `from` in cooldown until `coolUntilMs` and leases the
   * first free key of `candidates` instead (null: none left, and `from` is released).
   */
  rotateKey(account: string, token: number, from: string, coolUntilMs: number, candidates: readonly string[], nowMs: number): Promise<string | null>;
  /** Valid key leases (their account lock still exists with the same token). */
  keyLeases(): Promise<KeyLease[]>;
  /** key id -> cooldown end (ms), for keys still cooling at nowMs; REJECTED_UNTIL or more: set aside. */
  cooldowns(nowMs: number): Promise<Map<string, number>>;
  /** A rejected key may be leased again (an operator said so). False when it was not rejected. */
  enableKey(keyId: string): Promise<boolean>;
}

/**
 * A key the exchange rejected (invalid, bad signature, no permission, IP): "cooling" until this,
 * i.e. until an operator enables it again (SPEC 17). rotateKey with this `coolUntilMs` sets it aside.
 */
export const REJECTED_UNTIL = Number.MAX_SAFE_INTEGER;

interface Row {
  account: string;
  holder: string;
  instance_id: string | null;
  pid: number | null;
  start_ticks: number | null;
  broker_username: string;
  created_at: string;
  token: number;
}

const toLock = (r: Row): LockRow => ({
  account: r.account,
  holder: r.holder,
  instanceId: r.instance_id,
  pid: r.pid,
  startTicks: r.start_ticks,
  brokerUsername: r.broker_username,
  createdAt: r.created_at,
  token: r.token,
});

/** Internal: aborts (rolls back) an acquisition that removed a stale lock but found no key. */
class NoFreeKeyAfterStale extends Error {}

/** SQLite's failures become LockBackendError (503), except a full disk, which keeps its code (507). */
function backendFailure(err: unknown): unknown {
  return isDiskFull(err) || err instanceof NoFreeKeyAfterStale ? err : new LockBackendError((err as Error).message, { cause: err });
}

function guarded<A extends unknown[], R>(fn: (...a: A) => R): (...a: A) => Promise<R> {
  return async (...a: A) => {
    try {
      return fn(...a);
    } catch (err) {
      throw backendFailure(err);
    }
  };
}

export class SqliteLockBackend implements LockBackend {
  readonly kind = 'sqlite';
  private readonly acquireTx: (req: AcquireRequest, now: string) => AcquireResult;
  private readonly stmts;

  constructor(
    private readonly db: DB,
    private readonly now: () => number = Date.now,
  ) {
    this.stmts = {
      get: db.prepare<[string]>('SELECT * FROM account_locks WHERE account = ?'),
      all: db.prepare('SELECT * FROM account_locks ORDER BY account'),
      count: db.prepare('SELECT count(*) AS n FROM account_locks'),
      del: db.prepare<[string, number]>('DELETE FROM account_locks WHERE account = ? AND token = ?'),
      nextToken: db.prepare<[string]>(
        'INSERT INTO fencing (account, token) VALUES (?, 1) ON CONFLICT (account) DO UPDATE SET token = token + 1 RETURNING token',
      ),
      insert: db.prepare(
        'INSERT INTO account_locks (account, holder, broker_username, created_at, token) VALUES (@account, @holder, @brokerUsername, @createdAt, @token)',
      ),
      attach: db.prepare<[string, number, number | null, string, number]>(
        'UPDATE account_locks SET instance_id = ?, pid = ?, start_ticks = ? WHERE account = ? AND token = ?',
      ),
      // A key is taken when a valid lease holds it (its lock still exists) or it is cooling.
      keyTaken: db.prepare<[string, string, number]>(`SELECT 1 FROM key_leases kl JOIN account_locks al ON al.account = kl.account AND al.token = kl.lock_token
        WHERE kl.key_id = ? UNION ALL SELECT 1 FROM key_cooldowns WHERE key_id = ? AND until_ms > ?`),
      leaseKey: db.prepare<[string, string, number, string]>(
        'INSERT INTO key_leases (key_id, account, lock_token, leased_at) VALUES (?, ?, ?, ?) ON CONFLICT (key_id) DO UPDATE SET account = excluded.account, lock_token = excluded.lock_token, leased_at = excluded.leased_at',
      ),
      releaseKeys: db.prepare<[string, number]>('DELETE FROM key_leases WHERE account = ? AND lock_token = ?'),
      releaseKey: db.prepare<[string, string, number]>('DELETE FROM key_leases WHERE key_id = ? AND account = ? AND lock_token = ?'),
      cool: db.prepare<[string, number, string]>(
        'INSERT INTO key_cooldowns (key_id, until_ms, reason) VALUES (?, ?, ?) ON CONFLICT (key_id) DO UPDATE SET until_ms = excluded.until_ms, reason = excluded.reason',
      ),
      leases: db.prepare(`SELECT kl.key_id, kl.account, kl.lock_token FROM key_leases kl
        JOIN account_locks al ON al.account = kl.account AND al.token = kl.lock_token ORDER BY kl.key_id`),
      cooldowns: db.prepare<[number]>('SELECT key_id, until_ms FROM key_cooldowns WHERE until_ms > ?'),
      enable: db.prepare<[string, number]>('DELETE FROM key_cooldowns WHERE key_id = ? AND until_ms >= ?'),
    };
    // IMMEDIATE: the write lock is taken before the read, so two acquirers can never both see "free".
    const tx = db.transaction((req: AcquireRequest, now: string): AcquireResult => {
      const existing = this.stmts.get.get(req.account) as Row | undefined;
      let staleRemoved: LockRow | null = null;
      if (existing) {
        const row = toLock(existing);
        if (!req.isStale(row)) return { ok: false, heldBy: row };
        this.stmts.del.run(row.account, row.token);
        this.stmts.releaseKeys.run(row.account, row.token);
        staleRemoved = row;
      }
      let keyId: string | null = null;
      if (req.keys !== undefined) {
        keyId = this.firstFreeKey(req.keys, req.nowMs ?? this.now());
        // Nothing is written when no key is free: the whole start is refused.
        if (keyId === null) {
          if (staleRemoved) throw new NoFreeKeyAfterStale();
          return { ok: false, noFreeKey: true };
        }
      }
      const { token } = this.stmts.nextToken.get(req.account) as { token: number };
      const lock: LockRow = {
        account: req.account,
        holder: req.holder,
        instanceId: null,
        pid: null,
        startTicks: null,
        brokerUsername: req.brokerUsername,
        createdAt: now,
        token,
      };
      this.stmts.insert.run({ account: lock.account, holder: lock.holder, brokerUsername: lock.brokerUsername, createdAt: now, token });
      if (keyId !== null) this.stmts.leaseKey.run(keyId, req.account, token, now);
      return { ok: true, lock, staleRemoved, keyId };
    });
    this.acquireTx = (req, now) => {
      try {
        return tx.immediate(req, now);
      } catch (err) {
        // Rolled back, stale row included; refuse without touching anything.
        if (err instanceof NoFreeKeyAfterStale) return { ok: false, noFreeKey: true };
        throw err;
      }
    };
    const rotate = db.transaction((account: string, token: number, from: string, coolUntilMs: number, candidates: readonly string[], nowMs: number) => {
      if (!this.stmts.get.get(account)) return null;
      this.stmts.cool.run(from, coolUntilMs, coolUntilMs >= REJECTED_UNTIL ? 'rejected' : 'rotation');
      this.stmts.releaseKey.run(from, account, token);
      const next = this.firstFreeKey(candidates.filter((k) => k !== from), nowMs);
      if (next !== null) this.stmts.leaseKey.run(next, account, token, new Date(nowMs).toISOString());
      return next;
    });
    this.rotateTx = (...a) => rotate.immediate(...a);
  }

  private readonly rotateTx: (account: string, token: number, from: string, coolUntilMs: number, candidates: readonly string[], nowMs: number) => string | null;

  private firstFreeKey(candidates: readonly string[], nowMs: number): string | null {
    for (const k of candidates) if (this.stmts.keyTaken.get(k, k, nowMs) === undefined) return k;
    return null;
  }

  readonly rotateKey = guarded((account: string, token: number, from: string, coolUntilMs: number, candidates: readonly string[], nowMs: number) =>
    this.rotateTx(account, token, from, coolUntilMs, candidates, nowMs),
  );

  readonly keyLeases = guarded((): KeyLease[] =>
    (this.stmts.leases.all() as { key_id: string; account: string; lock_token: number }[]).map((r) => ({ keyId: r.key_id, account: r.account, lockToken: r.lock_token })),
  );

  readonly cooldowns = guarded(
    (nowMs: number) => new Map((this.stmts.cooldowns.all(nowMs) as { key_id: string; until_ms: number }[]).map((r) => [r.key_id, r.until_ms])),
  );

  readonly enableKey = guarded((keyId: string): boolean => this.stmts.enable.run(keyId, REJECTED_UNTIL).changes > 0);

  readonly acquire = guarded((req: AcquireRequest): AcquireResult => this.acquireTx(req, new Date(this.now()).toISOString()));

  readonly attach = guarded((account: string, token: number, p: { instanceId: string; pid: number; startTicks: number | null }): void => {
    this.stmts.attach.run(p.instanceId, p.pid, p.startTicks, account, token);
  });

  // The account lock and the keys leased under it go together.
  readonly release = guarded((account: string, token: number): boolean =>
    this.db.transaction(() => {
      this.stmts.releaseKeys.run(account, token);
      return this.stmts.del.run(account, token).changes > 0;
    })(),
  );

  readonly get = guarded((account: string): LockRow | null => {
    const r = this.stmts.get.get(account) as Row | undefined;
    return r ? toLock(r) : null;
  });

  readonly list = guarded((): LockRow[] => (this.stmts.all.all() as Row[]).map(toLock));

  readonly count = guarded((): number => (this.stmts.count.get() as { n: number }).n);

  readonly check = guarded((): void => {
    this.db.prepare('SELECT 1').get();
  });

  isOurs(): boolean {
    return true;
  }

  stillHeld(): boolean {
    return true;
  }

  // One daemon per machine owns this database: its own bots are known to the supervisor.
  async isLeasedInstance(): Promise<boolean> {
    return false;
  }
}
