/**
 * Events: stored first (SQLite gives the increasing id), then handed to live
 * subscribers once committed: in the same synchronous call, or, inside a group
 * commit (db/group.ts), when the group commits at the end of the turn. A read
 * of history commits an open group first, so a subscriber that replays with
 * `since` and subscribes in one tick sees no gap and no duplicate.
 */
import { EventRows, type EventRow } from '../db/events.js';
import type { CommitGroup } from '../db/group.js';
import { isDiskFull } from '../errors.js';
import type { DB } from '../db/open.js';
import { matchesFilter, type BotwardenEvent, type EventFilter, type EventType } from './types.js';

export type Listener = (e: BotwardenEvent) => void;

/** The alert outbox as the store sees it: a cheap filter, then the write inside the event's transaction. */
export interface Outbox {
  wants(type: string, account: string | undefined): boolean;
  enqueue(e: BotwardenEvent): void;
}

export interface Retention {
  retentionDays: number;
  maxRows: number;
}

export class EventStore {
  private readonly listeners = new Set<Listener>();
  readonly rows: EventRows;
  private outbox: Outbox | null = null;
  private mask: ((json: string) => string) | null = null;
  private lost = 0;

  constructor(
    db: DB,
    private readonly now: () => number = Date.now,
    private readonly logger?: { error(obj: object, msg: string): void; warn(obj: object, msg: string): void },
    /** Group commit of bursts (the daemon's); without one, every event is committed on its own. */
    private readonly group?: CommitGroup,
  ) {
    this.rows = new EventRows(db);
  }

  /**
   * Stores the event and streams it. Fields must never carry secrets. `alongside` is a write that
   * belongs with the event (a bot's new state): it runs in the event's transaction, both or neither,
   * and one commit instead of two.
   */
  emit(type: EventType, fields: { account?: string | undefined; [k: string]: unknown } = {}, alongside?: () => void): BotwardenEvent {
    const { account, ...fieldsData } = fields;
    let data: Record<string, unknown> = fieldsData;
    const at = new Date(this.now()).toISOString();
    let json = JSON.stringify(data);
    if (this.mask !== null) {
      // SPEC 15: no secret is stored, streamed or alerted (a failed spawn's message names its command line).
      const masked = this.mask(json);
      if (masked !== json) {
        json = masked;
        data = JSON.parse(masked) as Record<string, unknown>;
      }
    }
    const base = { type, at, ...(account !== undefined ? { account } : {}), ...data };
    let event!: BotwardenEvent;
    try {
      const outbox = this.outbox;
      const alert = outbox !== null && outbox.wants(type, account);
      if (alert || alongside) {
        // The event, the write that goes with it and the alerts it raises: one transaction.
        this.rows.atomically(() => {
          alongside?.();
          event = { id: this.rows.insert(type, account ?? null, at, json), ...base };
          if (alert) outbox.enqueue(event);
        });
      } else {
        // Nothing goes with it: one INSERT is atomic by itself (no BEGIN/COMMIT around it).
        event = { id: this.rows.insert(type, account ?? null, at, json), ...base };
      }
    } catch (err) {
      if (!isDiskFull(err)) throw err;
      // A full disk must not break the caller (a state change, a scanned line): the event is
      // counted, logged, and reported as `storage.recovered` once storing works again.
      this.countLost(type, account, err);
      return { id: -1, ...base };
    }
    // Subscribers hear of it once it is committed: at once, or when the open group commits.
    if (this.group?.active) this.group.after((committed) => (committed ? this.deliver(event) : this.countLost(type, account)));
    else this.deliver(event);
    return event;
  }

  private deliver(event: BotwardenEvent): void {
    for (const l of this.listeners) {
      try {
        l(event);
      } catch (err) {
        // A broken subscriber must not break the emitter or the others; it is logged.
        this.logger?.error({ err, type: event.type }, 'an event subscriber threw');
      }
    }
    // Storing works again: say how many were lost (after this event, so ids stream in order).
    if (this.lost > 0 && event.type !== 'storage.recovered') this.reportLost();
  }

  /** An event that could not be stored (a full disk, or its group's commit failed): never streamed, counted. */
  private countLost(type: EventType, account: string | undefined, err?: unknown): void {
    if (this.lost++ === 0) this.logger?.error({ err, type, account }, 'the disk is full: events cannot be stored (counting them)');
  }

  /** A burst begins (a shutdown, exits found together): its writes share one commit at the end of this turn. */
  begin(): void {
    this.group?.begin();
  }

  /**
   * Resolves once everything written so far is committed (false: that commit failed, a full disk):
   * before a signal or a spawn leaves the process.
   */
  durable(): Promise<boolean> {
    return this.group?.durable() ?? Promise.resolve(true);
  }

  /** Commits the open group now: before a reply leaves, or a read that a client will resume from. */
  flush(): void {
    this.group?.commit();
  }

  /** Events that could not be stored (a full disk) since the last report. */
  get lostEvents(): number {
    return this.lost;
  }

  /** Stores `storage.recovered` with the number of events lost while the disk was full (if it can now). */
  reportLost(): void {
    const lost = this.lost;
    if (lost === 0) return;
    this.lost = 0;
    const e = this.emit('storage.recovered', { lostEvents: lost });
    if (e.id === -1) this.lost += lost; // still full: counted again
    else this.logger?.warn({ lostEvents: lost }, 'storage works again; events lost while the disk was full are counted in storage.recovered');
  }

  /** Masks every secret in an event's fields (their JSON) before it is stored and streamed (SPEC 15). */
  setMask(mask: (json: string) => string): void {
    this.mask = mask;
  }

  /** Called inside the storing transaction of every event (the alert outbox). */
  setOutbox(outbox: Outbox): void {
    this.outbox = outbox;
  }

  subscribe(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /** Stored events after `since`, oldest first, filtered, at most `limit`. */
  history(since: number | undefined, limit: number, filter: EventFilter = {}): BotwardenEvent[] {
    // What a page shows must be committed, and already streamed: a client that replays, then
    // subscribes, must not get the same event twice.
    this.flush();
    const out: BotwardenEvent[] = [];
    if (since === undefined) {
      // The newest `limit` matching events, oldest first.
      let before = Number.MAX_SAFE_INTEGER;
      while (out.length < limit) {
        const rows = this.rows.before(before, 1000);
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
      const rows = this.rows.after(cursor, 1000);
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
    this.flush();
    return this.rows.lastId();
  }

  /**
   * Drops events older than retentionDays and beyond maxRows. Periodic `health` snapshots are
   * kept for an hour only, so they never crowd bot events out of maxRows. Returns rows removed.
   */
  prune(r: Retention): number {
    const cutoff = new Date(this.now() - r.retentionDays * 86_400_000).toISOString();
    const healthCutoff = new Date(this.now() - 3_600_000).toISOString();
    return this.rows.prune({ cutoff, type: 'health', typeCutoff: healthCutoff, maxRows: r.maxRows });
  }
}

function fromRow(r: EventRow): BotwardenEvent {
  return { id: r.id, type: r.type as EventType, at: r.at, ...(r.account !== null ? { account: r.account } : {}), ...(JSON.parse(r.data) as object) };
}
