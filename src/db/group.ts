/**
 * Group commit for bursts. A shutdown of 1,000 bots wrote ~5 small
 * transactions per bot (its stopping state, its exit, its lock, the lock's
 * event, its stopped state): 5,000 commits, half of the shutdown's CPU. Where
 * a burst begins (a shutdown, a poll that finds exits, a message of the
 * spawner), `begin()` opens one
 * transaction that every write of this turn of the event loop joins (their own
 * transactions become savepoints), committed when the turn ends.
 *
 * Nothing leaves the process before the writes it follows from are committed:
 * events reach subscribers after the commit (`after`); a reply (the HTTP
 * layer's onSend), a signal and a spawn wait for `durable()`; a read of
 * history calls `commit()` first. A crash inside the turn therefore loses only
 * writes nobody outside has seen, which is what a crash just before them
 * would have lost.
 */
import type { DB } from './open.js';

export class CommitGroup {
  private open = false;
  private readonly waiting: ((committed: boolean) => void)[] = [];

  constructor(
    private readonly db: DB,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Opens a group for the rest of this turn (nothing to do if one is open, or a transaction runs). */
  begin(): void {
    // (A closed database: the daemon is gone; whatever writes follow fail on their own.)
    if (this.open || !this.db.open || this.db.inTransaction) return;
    this.db.exec('BEGIN');
    this.open = true;
    setImmediate(() => this.commit());
  }

  get active(): boolean {
    return this.open;
  }

  /** Runs `fn(committed)` once the open group ends (at once, committed, when none is open). */
  after(fn: (committed: boolean) => void): void {
    if (this.open) this.waiting.push(fn);
    else fn(true);
  }

  /** Resolves once every write made so far is committed: true, or false when that commit failed. */
  durable(): Promise<boolean> {
    return this.open ? new Promise((resolve) => this.waiting.push(resolve)) : Promise.resolve(true);
  }

  /** Commits the open group now (a reply is about to leave); true when nothing was lost. */
  commit(): boolean {
    if (!this.open) return true;
    this.open = false;
    let committed = true;
    try {
      this.db.exec('COMMIT');
    } catch (err) {
      // A full disk: SQLite may have rolled back already; make sure, and say so.
      committed = false;
      try {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
      } catch {
        // nothing more to undo
      }
      this.onError(err);
    }
    for (const fn of this.waiting.splice(0)) fn(committed);
    return committed;
  }
}
