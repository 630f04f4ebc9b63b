/** The alert outbox (`alert_outbox`, `alert_last`): durable, folded, retried. */
import type { DB } from './open.js';

export interface OutboxRow {
  id: number;
  target: string;
  fold_key: string;
  event: string;
  count: number;
  created_ms: number;
  next_ms: number;
  attempts: number;
  last_error: string | null;
}

export class AlertOutbox {
  private readonly s;

  constructor(db: DB) {
    this.s = {
      pending: db.prepare<[string, string]>('SELECT * FROM alert_outbox WHERE target = ? AND fold_key = ? AND attempts = 0 ORDER BY id DESC LIMIT 1'),
      last: db.prepare<[string, string]>('SELECT at_ms FROM alert_last WHERE target = ? AND fold_key = ?'),
      fold: db.prepare<[string, number]>('UPDATE alert_outbox SET event = ?, count = count + 1 WHERE id = ?'),
      insert: db.prepare<[string, string, string, number, number]>('INSERT INTO alert_outbox (target, fold_key, event, created_ms, next_ms) VALUES (?, ?, ?, ?, ?)'),
      due: db.prepare<[number, number]>('SELECT * FROM alert_outbox WHERE next_ms <= ? ORDER BY next_ms, id LIMIT ?'),
      nextDue: db.prepare('SELECT min(next_ms) AS t FROM alert_outbox'),
      done: db.prepare<[number]>('DELETE FROM alert_outbox WHERE id = ?'),
      retry: db.prepare<[number, string, number]>('UPDATE alert_outbox SET next_ms = ?, last_error = ?, attempts = attempts + 1 WHERE id = ?'),
      sent: db.prepare<[string, string, number]>('INSERT INTO alert_last (target, fold_key, at_ms) VALUES (?, ?, ?) ON CONFLICT (target, fold_key) DO UPDATE SET at_ms = excluded.at_ms'),
      queued: db.prepare('SELECT target, count(*) AS n, max(attempts) AS attempts FROM alert_outbox GROUP BY target'),
    };
  }

  /**
   * Queues an event for a target. A repeat of the same fold key folds into the row still waiting;
   * a new one inside minIntervalMs of the last message waits for the window to end.
   */
  enqueue(target: string, foldKey: string, event: string, nowMs: number, minIntervalMs: number): void {
    const waiting = this.s.pending.get(target, foldKey) as OutboxRow | undefined;
    if (waiting && minIntervalMs > 0 && waiting.next_ms > nowMs) {
      this.s.fold.run(event, waiting.id);
      return;
    }
    const last = (this.s.last.get(target, foldKey) as { at_ms: number } | undefined)?.at_ms;
    const next = last !== undefined && minIntervalMs > 0 ? Math.max(nowMs, last + minIntervalMs) : nowMs;
    this.s.insert.run(target, foldKey, event, nowMs, next);
    // The next one folds into this row until it is sent.
    this.s.sent.run(target, foldKey, next);
  }

  due(nowMs: number, limit = 50): OutboxRow[] {
    return this.s.due.all(nowMs, limit) as OutboxRow[];
  }

  nextDue(): number | null {
    return (this.s.nextDue.get() as { t: number | null }).t;
  }

  delivered(row: OutboxRow, nowMs: number): void {
    this.s.done.run(row.id);
    this.s.sent.run(row.target, row.fold_key, nowMs);
  }

  dropped(row: OutboxRow): void {
    this.s.done.run(row.id);
  }

  retry(row: OutboxRow, nextMs: number, error: string): void {
    this.s.retry.run(nextMs, error, row.id);
  }

  queued(): Map<string, { n: number; attempts: number }> {
    return new Map((this.s.queued.all() as { target: string; n: number; attempts: number }[]).map((r) => [r.target, { n: r.n, attempts: r.attempts }]));
  }
}
