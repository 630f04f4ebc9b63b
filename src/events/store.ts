/**
 * Events: stored first (SQLite gives the increasing id), then handed to live
 * subscribers in the same synchronous call. A subscriber that replays with
 * `since` and subscribes in one tick therefore sees no gap and no duplicate.
 */
import type { DB } from '../db/open.js';
import { matchesFilter, type BotwardenEvent, type EventFilter, type EventType } from './types.js';

export type Listener = (e: BotwardenEvent) => void;

export interface Retention {
  retentionDays: number;
  maxRows: number;
}

export class EventStore {
  private readonly listeners = new Set<Listener>();
  private readonly insert;
  private readonly selectSince;
  private readonly selectLast;
  private readonly selectBefore;

  constructor(
    private readonly db: DB,
    private readonly now: () => number = Date.now,
  ) {
    this.insert = db.prepare<[string, string | null, string, string]>('INSERT INTO events (type, account, at, data) VALUES (?, ?, ?, ?)');
    this.selectSince = db.prepare<[number, number]>('SELECT id, type, account, at, data FROM events WHERE id > ? ORDER BY id LIMIT ?');
    this.selectLast = db.prepare<[number]>('SELECT id, type, account, at, data FROM events ORDER BY id DESC LIMIT ?');
    this.selectBefore = db.prepare<[number, number]>('SELECT id, type, account, at, data FROM events WHERE id < ? ORDER BY id DESC LIMIT ?');
  }

  /** Stores the event and streams it. Fields must never carry secrets. */
  emit(type: EventType, fields: { account?: string | undefined; [k: string]: unknown } = {}): BotwardenEvent {
    const { account, ...data } = fields;
    const at = new Date(this.now()).toISOString();
    const info = this.insert.run(type, account ?? null, at, JSON.stringify(data));
    const event: BotwardenEvent = { id: Number(info.lastInsertRowid), type, at, ...(account !== undefined ? { account } : {}), ...data };
    for (const l of this.listeners) {
      try {
        l(event);
      } catch {
        // A broken subscriber must not break the emitter or the others.
      }
    }
    return event;
  }

  subscribe(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /** Stored events after `since`, oldest first, filtered, at most `limit`. */
  history(since: number | undefined, limit: number, filter: EventFilter = {}): BotwardenEvent[] {
    const out: BotwardenEvent[] = [];
    if (since === undefined) {
      // The newest `limit` matching events, oldest first.
      let before = Number.MAX_SAFE_INTEGER;
      while (out.length < limit) {
        const rows = this.selectBefore.all(before, 1000) as Row[];
        if (rows.length === 0) break;
        for (const r of rows) {
          const e = fromRow(r);
          if (matchesFilter(e, filter)) out.push(e);
          if (out.length >= limit) break;
        }
        before = rows[rows.length - 1]!.id;
      }
      return out.reverse();
    }
    let cursor = since;
    while (out.length < limit) {
      const rows = this.selectSince.all(cursor, 1000) as Row[];
      if (rows.length === 0) break;
      for (const r of rows) {
        const e = fromRow(r);
        if (matchesFilter(e, filter)) out.push(e);
        if (out.length >= limit) break;
      }
      cursor = rows[rows.length - 1]!.id;
    }
    return out;
  }

  lastId(): number {
    const row = this.selectLast.get(1) as Row | undefined;
    return row?.id ?? 0;
  }

  /**
   * Drops events older than retentionDays and beyond maxRows. Periodic `health` snapshots are
   * kept for an hour only, so they never crowd bot events out of maxRows. Returns rows removed.
   */
  prune(r: Retention): number {
    const cutoff = new Date(this.now() - r.retentionDays * 86_400_000).toISOString();
    const healthCutoff = new Date(this.now() - 3_600_000).toISOString();
    const h = this.db.prepare(`DELETE FROM events WHERE type = 'health' AND at < ?`).run(healthCutoff).changes;
    const a = this.db.prepare('DELETE FROM events WHERE at < ?').run(cutoff).changes + h;
    const b = this.db
      .prepare('DELETE FROM events WHERE id <= (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?)')
      .run(r.maxRows).changes;
    return a + b;
  }
}

interface Row {
  id: number;
  type: EventType;
  account: string | null;
  at: string;
  data: string;
}

function fromRow(r: Row): BotwardenEvent {
  return { id: r.id, type: r.type, at: r.at, ...(r.account !== null ? { account: r.account } : {}), ...(JSON.parse(r.data) as object) };
}
