/** The `events` table: append, page, prune. The EventStore (events/store.ts) streams on top. */
import type { DB } from './open.js';

export interface EventRow {
  id: number;
  type: string;
  account: string | null;
  at: string;
  data: string;
}

export class EventRows {
  private readonly s;

  constructor(private readonly db: DB) {
    this.s = {
      insert: db.prepare<[string, string | null, string, string]>('INSERT INTO events (type, account, at, data) VALUES (?, ?, ?, ?)'),
      since: db.prepare<[number, number]>('SELECT id, type, account, at, data FROM events WHERE id > ? ORDER BY id LIMIT ?'),
      last: db.prepare<[number]>('SELECT id, type, account, at, data FROM events ORDER BY id DESC LIMIT ?'),
      before: db.prepare<[number, number]>('SELECT id, type, account, at, data FROM events WHERE id < ? ORDER BY id DESC LIMIT ?'),
      pruneType: db.prepare<[string, string]>('DELETE FROM events WHERE type = ? AND at < ?'),
      pruneOlder: db.prepare<[string]>('DELETE FROM events WHERE at < ?'),
      pruneBeyond: db.prepare<[number]>('DELETE FROM events WHERE id <= (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?)'),
      countSince: db.prepare<[string, string]>('SELECT account, count(*) AS n FROM events WHERE type = ? AND at > ? AND account IS NOT NULL GROUP BY account ORDER BY account'),
    };
  }

  insert(type: string, account: string | null, at: string, data: string): number {
    return Number(this.s.insert.run(type, account, at, data).lastInsertRowid);
  }

  /** Runs fn in one transaction (an event and the alerts it raises are stored together). */
  atomically<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  /** Up to `limit` rows after id `since`, oldest first. */
  after(since: number, limit: number): EventRow[] {
    return this.s.since.all(since, limit) as EventRow[];
  }

  /** Up to `limit` rows before id `before`, newest first. */
  before(before: number, limit: number): EventRow[] {
    return this.s.before.all(before, limit) as EventRow[];
  }

  lastId(): number {
    return (this.s.last.get(1) as EventRow | undefined)?.id ?? 0;
  }

  /** Events of one type per account since an ISO time. */
  countByAccount(type: string, sinceIso: string): { account: string; n: number }[] {
    return this.s.countSince.all(type, sinceIso) as { account: string; n: number }[];
  }

  /** Drops events of `type` older than typeCutoff, all older than cutoff, and beyond maxRows. */
  prune(o: { cutoff: string; type: string; typeCutoff: string; maxRows: number }): number {
    return this.db.transaction(
      () => this.s.pruneType.run(o.type, o.typeCutoff).changes + this.s.pruneOlder.run(o.cutoff).changes + this.s.pruneBeyond.run(o.maxRows).changes,
    )();
  }
}
