/**
 * An account's lock (and the API key leased with it), taken and released in
 * this one place, whatever the backend. The stale-lock rule lives here too:
 * the controller's start, the periodic sweep and the boot reconcile all ask
 * `isStaleLock`.
 */
import type { Logger } from 'pino';
import type { Account } from '../config/schema.js';
import type { LockBackend, LockRow } from '../db/locks.js';
import { Errors, isBotwardenError, isDiskFull, LockBackendError, type LockFacts } from '../errors.js';
import type { EventStore } from '../events/store.js';
import type { ProcessHost } from '../host/host.js';
import type { BotKeys } from './collaborators.js';

/**
 * The one stale-lock rule (the start, the periodic sweep and the boot reconcile all ask it): a
 * lock row is stale when no process of its instance lives (a reused pid is not its process), or
 * when it never got a process and belongs to another daemon.
 */
export function isStaleLock(row: LockRow, ownHolder: string, host: Pick<ProcessHost, 'lives'>): boolean {
  if (row.pid === null && row.holder === ownHolder) return false;
  return !host.lives(row);
}

export interface LeaseDeps {
  locks: LockBackend;
  events: EventStore;
  logger: Logger;
  holder: string;
  /** Asked whether a lock's instance still has live processes (the stale-lock rule). */
  host: ProcessHost;
  keys: BotKeys;
}

export class AccountLease {
  private lock: LockRow | null = null;
  private key: string | null = null;

  constructor(
    private readonly d: LeaseDeps,
    private readonly accountOf: () => Account,
  ) {}

  get token(): number | null {
    return this.lock?.token ?? null;
  }

  get keyId(): string | null {
    return this.key;
  }

  /** The facts a 409 and the Bot view carry, completed with the live process. */
  facts(live: { pid: number; startedAt: string } | null): LockFacts | null {
    const l = this.lock;
    if (!l) return null;
    return { holder: l.holder, host: l.host, since: live?.startedAt ?? l.createdAt, token: l.token, pid: live?.pid ?? l.pid };
  }

  /**
   * Takes the account's lock and, with a key pool, a key in the same transaction.
   * `reclaim`: boot re-takes the lock of a bot it adopts, with that bot's own key.
   */
  async acquire(opts: { nowMs: number; reclaim?: { keyId: string | null } }): Promise<void> {
    const account = this.accountOf();
    let res;
    try {
      res = await this.d.locks.acquire({
        account: account.id,
        holder: this.d.holder,
        brokerUsername: account.brokerUsername,
        isStale: opts.reclaim ? () => true : (row) => isStaleLock(row, this.d.holder, this.d.host),
        keys: opts.reclaim ? (opts.reclaim.keyId !== null ? [opts.reclaim.keyId] : undefined) : this.d.keys.candidates(account),
        nowMs: opts.nowMs,
      });
    } catch (err) {
      throw backendError(err);
    }
    if (!res.ok && 'noFreeKey' in res) throw Errors.noFreeKey(account.id, account.keys?.pool ?? []);
    if (!res.ok) {
      const h = res.heldBy;
      throw Errors.accountLocked(account.name, h.brokerUsername || account.brokerUsername, { holder: h.holder, host: h.host, since: h.createdAt, token: h.token, pid: h.pid });
    }
    if (res.staleRemoved) {
      const s = res.staleRemoved;
      this.d.events.emit('lock.stale_removed', { account: account.id, holder: s.holder, pid: s.pid, token: s.token });
    }
    this.lock = res.lock;
    this.key = res.keyId;
    this.d.events.emit('lock.acquired', { account: account.id, holder: res.lock.holder, token: res.lock.token, keyId: res.keyId, ...(opts.reclaim ? { reclaimed: true } : {}) });
  }

  /** Boot: a live bot's lock row is still there; keep it as ours. */
  keep(lock: LockRow, keyId: string | null): void {
    this.lock = lock;
    this.key = keyId;
  }

  /** Before a spawn: the lease must still be ours (PostgreSQL: not fenced meanwhile). */
  assertValid(): void {
    const lock = this.lock;
    if (!lock || !this.d.locks.stillHeld(lock.account, lock.token)) throw Errors.lockBackendUnavailable(`the lease of '${this.accountOf().id}' was lost`);
  }

  /** Records the spawned process on the lock (fenced by token). */
  async attach(p: { instanceId: string; pid: number; startTicks: number | null }): Promise<void> {
    const lock = this.lock;
    if (!lock) throw new Error(`attach without a lock for ${this.accountOf().id}`);
    Object.assign(lock, p);
    try {
      await this.d.locks.attach(lock.account, lock.token, p);
    } catch (err) {
      throw backendError(err);
    }
  }

  /** Rotation: cools `from` down and leases the next free key under the lock we hold. Null: none left. */
  async rotateKey(coolUntilMs: number, nowMs: number): Promise<string | null> {
    const lock = this.lock;
    const from = this.key;
    if (!lock || from === null) return null;
    const to = await this.d.locks.rotateKey(lock.account, lock.token, from, coolUntilMs, this.d.keys.candidates(this.accountOf()) ?? [], nowMs);
    this.key = to;
    return to;
  }

  /** Releases our lock (and key); a failure is logged, never thrown: the process is already gone. */
  async release(): Promise<void> {
    const lock = this.lock;
    if (!lock) return;
    this.lock = null;
    this.key = null;
    try {
      await this.d.locks.release(lock.account, lock.token);
    } catch (err) {
      this.d.logger.error({ err, account: lock.account }, 'could not release the account lock');
    }
    this.d.events.emit('lock.released', { account: lock.account, token: lock.token });
  }

  /** The backend told us the lease is gone (fenced): forget it without touching the database. */
  forget(): void {
    this.lock = null;
    this.key = null;
  }
}

/** A backend failure becomes 503 LOCK_BACKEND_UNAVAILABLE, a full disk 507; coded errors pass; anything else is a bug and stays itself. */
function backendError(err: unknown): unknown {
  if (isBotwardenError(err)) return err;
  if (isDiskFull(err)) return Errors.storageFull((err as Error).message, err);
  if (err instanceof LockBackendError) return Errors.lockBackendUnavailable(err.message, err);
  return err;
}
