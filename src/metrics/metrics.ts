/**
 * Prometheus metrics through prom-client, on a Registry of our own with the
 * default process metrics. Bot and key series are computed at scrape time
 * (`collect()`) from the supervisor's live state, never kept in a second copy;
 * counters of things that happen (duplicates killed, rotations) follow the
 * event stream. Labels: account, key, state, alert, outcome; never a pid.
 */
import client from 'prom-client';
import type { PgLockBackend } from '../db/pg-locks.js';
import type { EventStore } from '../events/store.js';
import type { KeyPool } from '../keys/pool.js';
import { BOT_STATES } from '../supervisor/states.js';
import type { Supervisor } from '../supervisor/supervisor.js';

export interface MetricsDeps {
  supervisor: Supervisor;
  keys: KeyPool;
  events: EventStore;
  version: string;
  pg?: PgLockBackend | null;
  /** Clock offsets to the exchanges (SPEC 17). */
  clock?: { list(): { offsets: { broker: string; offsetMs: number | null }[] } };
}

const KEY_STATES = ['free', 'leased', 'cooling', 'missing'] as const;

export class Metrics {
  readonly registry = new client.Registry();
  readonly alertsSent: client.Counter<'alert' | 'outcome'>;

  constructor(d: MetricsDeps) {
    const r = this.registry;
    // prom-client samples the event loop every 10 ms by default: 100 wakeups a second, most of an idle
    // daemon's CPU. Once a second is plenty for a lag figure scraped every 15 s.
    client.collectDefaultMetrics({ register: r, eventLoopMonitoringPrecision: 1000 });
    // One view of every bot per scrape, shared by the collectors (not one per metric family);
    // text() forgets it before each scrape.
    const bots = () => (this.scrapeBots ??= d.supervisor.list());
    new client.Gauge({
      name: 'botwarden_bot_up',
      help: '1 while the bot is starting, running or stopping (a process is alive), else 0.',
      labelNames: ['account'],
      registers: [r],
      collect() {
        this.reset();
        for (const b of bots()) this.set({ account: b.account }, b.pid !== null ? 1 : 0);
      },
    });
    new client.Gauge({
      name: 'botwarden_bot_state',
      help: 'The bot state: 1 for the current state, 0 for the others.',
      labelNames: ['account', 'state'],
      registers: [r],
      collect() {
        this.reset();
        for (const b of bots()) for (const s of BOT_STATES) this.set({ account: b.account, state: s }, b.state === s ? 1 : 0);
      },
    });
    new client.Counter({
      name: 'botwarden_bot_restarts_total',
      help: 'Restarts since the last operator start (backoff restarts and key rotations).',
      labelNames: ['account'],
      registers: [r],
      collect() {
        this.reset();
        for (const b of bots()) this.inc({ account: b.account }, b.restarts);
      },
    });
    new client.Gauge({
      name: 'botwarden_bot_memory_bytes',
      help: "Resident memory of the bot's whole process tree, last sample (absent when none runs).",
      labelNames: ['account'],
      registers: [r],
      collect() {
        this.reset();
        for (const b of bots()) if (b.rssBytes !== null && b.pid !== null) this.set({ account: b.account }, b.rssBytes);
      },
    });
    new client.Counter({
      name: 'botwarden_bot_cpu_seconds_total',
      help: "CPU time (user + system) of the bot's whole process tree, sampled, since the daemon started.",
      labelNames: ['account'],
      registers: [r],
      collect() {
        this.reset();
        for (const b of d.supervisor.all()) this.inc({ account: b.id }, b.cpuSeconds);
      },
    });
    new client.Gauge({
      name: 'botwarden_bot_start_time_seconds',
      help: 'Start time of the running process, in unix seconds (absent when none runs).',
      labelNames: ['account'],
      registers: [r],
      collect() {
        this.reset();
        for (const b of bots()) if (b.startedAt) this.set({ account: b.account }, Date.parse(b.startedAt) / 1000);
      },
    });
    new client.Counter({
      name: 'botwarden_nonce_errors_total',
      help: 'Nonce / API-key error lines seen in the bot output since the daemon started.',
      labelNames: ['account'],
      registers: [r],
      collect() {
        this.reset();
        for (const b of bots()) this.inc({ account: b.account }, b.nonceErrors.total);
      },
    });
    const dupKilled = new client.Counter({ name: 'botwarden_duplicates_killed_total', help: 'Duplicate instances killed.', labelNames: ['account'], registers: [r] });
    const rotations = new client.Counter({ name: 'botwarden_key_rotations_total', help: 'API keys rotated away from by the nonce circuit breaker.', labelNames: ['account'], registers: [r] });
    const unresponsive = new client.Counter({ name: 'botwarden_bot_unresponsive_total', help: 'Times a live bot was found unresponsive (liveness checks).', labelNames: ['account'], registers: [r] });
    const fences = new client.Counter({ name: 'botwarden_fences_total', help: 'Bots stopped because their lease could not be renewed (PostgreSQL mode).', labelNames: ['account'], registers: [r] });
    for (const b of bots()) {
      dupKilled.inc({ account: b.account }, 0);
      rotations.inc({ account: b.account }, 0);
    }
    d.events.subscribe((e) => {
      const account = e.account ?? '';
      if (e.type === 'duplicate.killed') dupKilled.inc({ account });
      if (e.type === 'bot.unresponsive') unresponsive.inc({ account });
      else if (e.type === 'key.rotated') rotations.inc({ account });
      else if (e.type === 'bot.stopping' && e.reason === 'fence') fences.inc({ account });
    });
    new client.Gauge({
      name: 'botwarden_key_state',
      help: 'API key state: 1 for the current state, 0 for the others.',
      labelNames: ['key', 'state'],
      registers: [r],
      async collect() {
        this.reset();
        for (const k of await d.keys.list().catch(() => [])) for (const s of KEY_STATES) this.set({ key: k.id, state: s }, k.state === s ? 1 : 0);
      },
    });
    this.alertsSent = new client.Counter({ name: 'botwarden_alerts_sent_total', help: 'Alert deliveries by target and outcome (sent, failed, dropped).', labelNames: ['alert', 'outcome'], registers: [r] });
    const clock = d.clock;
    if (clock) {
      new client.Gauge({
        name: 'botwarden_clock_offset_seconds',
        help: "The exchange's time minus this machine's, last measured (positive: this machine is behind).",
        labelNames: ['broker'],
        registers: [r],
        collect() {
          this.reset();
          for (const o of clock.list().offsets) if (o.offsetMs !== null) this.set({ broker: o.broker }, o.offsetMs / 1000);
        },
      });
    }
    new client.Gauge({ name: 'botwarden_build_info', help: 'The running version.', labelNames: ['version'], registers: [r] }).set({ version: d.version }, 1);
    const pg = d.pg;
    if (pg) {
      new client.Counter({
        name: 'botwarden_lease_renew_failures_total',
        help: 'Lease renewals that failed (PostgreSQL mode).',
        registers: [r],
        collect() {
          this.reset();
          this.inc(pg.stats.renewFailures);
        },
      });
      new client.Gauge({
        name: 'botwarden_lease_held',
        help: '1 when this daemon holds the account lease (PostgreSQL mode).',
        labelNames: ['account'],
        registers: [r],
        collect() {
          this.reset();
          const held = new Set(pg.fenceDeadlines().keys());
          for (const b of bots()) this.set({ account: b.account }, held.has(b.account) ? 1 : 0);
        },
      });
    }
  }

  private scrapeBots: ReturnType<Supervisor['list']> | null = null;

  text(): Promise<string> {
    this.scrapeBots = null;
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
