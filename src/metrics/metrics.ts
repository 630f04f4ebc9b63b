/**
 * Prometheus metrics. prom-client and its collectors (./collectors.ts) are loaded on the first
 * scrape of /metrics, not before: a daemon nobody scrapes does not carry them (docs/benchmarks.md,
 * "Memory by module"). What happens before that scrape is counted here from the daemon's start,
 * in plain tallies the collectors read: the counters of things that happen (duplicates killed,
 * key rotations, unresponsive bots, fences, alert deliveries) lose nothing to the laziness.
 * Bot and key series are computed at scrape time from the live state, never kept in a second copy.
 */
import type { PgLockBackend } from '../db/pg-locks.js';
import type { EventStore } from '../events/store.js';
import type { KeyPool } from '../keys/pool.js';
import type { Supervisor } from '../supervisor/supervisor.js';

export interface MetricsDeps {
  supervisor: Supervisor;
  keys: KeyPool;
  events: Pick<EventStore, 'subscribe'>;
  version: string;
  pg?: PgLockBackend | null;
  /** Clock offsets to the exchanges (SPEC 17). */
  clock?: { list(): { offsets: { broker: string; offsetMs: number | null }[] } };
}

/** A count per label set, kept without prom-client; the collectors turn it into a counter. */
export class Tally<L extends string> {
  private readonly counts = new Map<string, { labels: Record<L, string>; n: number }>();

  inc(labels: Record<L, string>, n = 1): void {
    const key = JSON.stringify(labels);
    const c = this.counts.get(key);
    if (c) c.n += n;
    else this.counts.set(key, { labels, n });
  }

  entries(): Iterable<{ labels: Record<L, string>; n: number }> {
    return this.counts.values();
  }
}

/** Counters of things that happen, by account, from the event stream. */
export interface EventTallies {
  duplicatesKilled: Tally<'account'>;
  keyRotations: Tally<'account'>;
  unresponsive: Tally<'account'>;
  fences: Tally<'account'>;
}

/** What the collectors are built on: the daemon's services and the tallies kept since its start. */
export interface CollectorSource extends MetricsDeps {
  tallies: EventTallies;
  alertsSent: Tally<'alert' | 'outcome'>;
}

/** The registry the first scrape builds (./collectors.ts). */
export interface MetricsRegistry {
  text(): Promise<string>;
}

export class Metrics {
  /** Alert deliveries by target and outcome (sent, failed, dropped): the alert service counts them here. */
  readonly alertsSent = new Tally<'alert' | 'outcome'>();
  private readonly tallies: EventTallies = { duplicatesKilled: new Tally(), keyRotations: new Tally(), unresponsive: new Tally(), fences: new Tally() };
  private registry: Promise<MetricsRegistry> | null = null;

  constructor(private readonly d: MetricsDeps) {
    const t = this.tallies;
    // Every account known at the start has its duplicate and rotation counters, at 0 until one happens.
    for (const b of d.supervisor.list()) {
      t.duplicatesKilled.inc({ account: b.account }, 0);
      t.keyRotations.inc({ account: b.account }, 0);
    }
    d.events.subscribe((e) => {
      const account = e.account ?? '';
      if (e.type === 'duplicate.killed') t.duplicatesKilled.inc({ account });
      else if (e.type === 'bot.unresponsive') t.unresponsive.inc({ account });
      else if (e.type === 'key.rotated') t.keyRotations.inc({ account });
      else if (e.type === 'bot.stopping' && e.reason === 'fence') t.fences.inc({ account });
    });
  }

  /** The exposition text; the first call loads prom-client and builds the collectors. */
  async text(): Promise<string> {
    this.registry ??= import('./collectors.js').then(
      ({ createRegistry }) => createRegistry({ ...this.d, tallies: this.tallies, alertsSent: this.alertsSent }),
      (err: unknown) => {
        this.registry = null; // tried again on the next scrape
        throw err;
      },
    );
    return (await this.registry).text();
  }

  get contentType(): string {
    return 'text/plain; version=0.0.4; charset=utf-8';
  }
}
