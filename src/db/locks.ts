/**
 * Account locks. The interface is what a supervisor needs from any backend;
 * SQLite implements it for one machine, a PostgreSQL lease backend will
 * implement it for several (SPEC section 9). Methods are async for that
 * reason; the SQLite one completes synchronously inside.
 */
import type { DB } from './open.js';

export interface LockRow {
  account: string;
  holder: string;
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
}

export type AcquireResult =
  | { ok: true; lock: LockRow; staleRemoved: LockRow | null }
  | { ok: false; heldBy: LockRow };

export interface LockBackend {
  readonly kind: string;
  acquire(req: AcquireRequest): Promise<AcquireResult>;
  /** Records the spawned process on the lock we hold (fenced by token). */
  attach(account: string, token: number, proc: { instanceId: string; pid: number; startTicks: number | null }): Promise<void>;
  /** Releases our lock; a no-op when the token no longer matches. */
  release(account: string, token: number): Promise<boolean>;
  get(account: string): Promise<LockRow | null>;
  list(): Promise<LockRow[]>;
  /** Throws when the backend cannot be used (for /health). */
  check(): Promise<void>;
}

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
    };
    // IMMEDIATE: the write lock is taken before the read, so two acquirers can never both see "free".
    const tx = db.transaction((req: AcquireRequest, now: string): AcquireResult => {
      const existing = this.stmts.get.get(req.account) as Row | undefined;
      let staleRemoved: LockRow | null = null;
      if (existing) {
        const row = toLock(existing);
        if (!req.isStale(row)) return { ok: false, heldBy: row };
        this.stmts.del.run(row.account, row.token);
        staleRemoved = row;
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
      return { ok: true, lock, staleRemoved };
    });
    this.acquireTx = (req, now) => tx.immediate(req, now);
  }

  async acquire(req: AcquireRequest): Promise<AcquireResult> {
    return this.acquireTx(req, new Date(this.now()).toISOString());
  }

  async attach(account: string, token: number, p: { instanceId: string; pid: number; startTicks: number | null }): Promise<void> {
    this.stmts.attach.run(p.instanceId, p.pid, p.startTicks, account, token);
  }

  async release(account: string, token: number): Promise<boolean> {
    return this.stmts.del.run(account, token).changes > 0;
  }

  async get(account: string): Promise<LockRow | null> {
    const r = this.stmts.get.get(account) as Row | undefined;
    return r ? toLock(r) : null;
  }

  async list(): Promise<LockRow[]> {
    return (this.stmts.all.all() as Row[]).map(toLock);
  }

  async check(): Promise<void> {
    this.db.prepare('SELECT 1').get();
  }
}
