/**
 * The Prometheus collectors, on a prom-client Registry of our own with the default process
 * metrics. Loaded by the first scrape (metrics.ts). Labels: account, key, state, alert, outcome,
 * broker; never a pid.
 */
import client from 'prom-client';
import type { PgLockBackend } from '../db/pg-locks.js';
import { BOT_STATES } from '../supervisor/states.js';
import type { Supervisor } from '../supervisor/supervisor.js';
import type { CollectorSource, MetricsDeps, MetricsRegistry, Tally } from './metrics.js';

const KEY_STATES = ['free', 'leased', 'cooling', 'missing'] as const;

type Registry = client.Registry;
/** Every bot's view, read once per scrape and shared by the collectors (not once per metric family). */
type Bots = () => ReturnType<Supervisor['list']>;

/**
 * The process metrics (CPU, memory, heap, event loop lag, GC). prom-client samples the event loop
 * every 10 ms by default: 100 wakeups a second, most of an idle daemon's CPU. Once a second is
 * plenty for a lag figure scraped every 15 s.
 */
function processMetrics(r: Registry): void {
  client.collectDefaultMetrics({ register: r, eventLoopMonitoringPrecision: 1000 });
}

/** A gauge computed at scrape time, per account. */
function accountGauge(r: Registry, name: string, help: string, fill: (set: (account: string, v: number) => void) => void): void {
  new client.Gauge({
    name,
    help,
    labelNames: ['account'],
    registers: [r],
    collect() {
      this.reset();
      fill((account, v) => this.set({ account }, v));
    },
  });
}

/** A counter computed at scrape time, per account, from a running total the daemon keeps. */
function accountCounter(r: Registry, name: string, help: string, fill: (inc: (account: string, v: number) => void) => void): void {
  new client.Counter({
    name,
    help,
    labelNames: ['account'],
    registers: [r],
    collect() {
      this.reset();
      fill((account, v) => this.inc({ account }, v));
    },
  });
}

/** A counter whose counts are a Tally kept since the daemon started. */
function tallyCounter<L extends string>(r: Registry, name: string, help: string, labelNames: L[], tally: Tally<L>): void {
  new client.Counter<L>({
    name,
    help,
    labelNames,
    registers: [r],
    collect() {
      this.reset();
      for (const { labels, n } of tally.entries()) this.inc(labels as client.LabelValues<L>, n);
    },
  });
}

/** The bots, from the supervisor's live state. */
function botMetrics(r: Registry, supervisor: Supervisor, bots: Bots): void {
  accountGauge(r, 'botwarden_bot_up', '1 while the bot is starting, running or stopping (a process is alive), else 0.', (set) => {
    for (const b of bots()) set(b.account, b.pid !== null ? 1 : 0);
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
  accountCounter(r, 'botwarden_bot_restarts_total', 'Restarts since the last operator start (backoff restarts and key rotations).', (inc) => {
    for (const b of bots()) inc(b.account, b.restarts);
  });
  accountGauge(r, 'botwarden_bot_memory_bytes', "Resident memory of the bot's whole process tree, last sample (absent when none runs).", (set) => {
    for (const b of bots()) if (b.rssBytes !== null && b.pid !== null) set(b.account, b.rssBytes);
  });
  accountCounter(r, 'botwarden_bot_cpu_seconds_total', "CPU time (user + system) of the bot's whole process tree, sampled, since the daemon started.", (inc) => {
    for (const b of supervisor.all()) inc(b.id, b.cpuSeconds);
  });
  accountGauge(r, 'botwarden_bot_start_time_seconds', 'Start time of the running process, in unix seconds (absent when none runs).', (set) => {
    for (const b of bots()) if (b.startedAt) set(b.account, Date.parse(b.startedAt) / 1000);
  });
  accountCounter(r, 'botwarden_nonce_errors_total', 'Nonce / API-key error lines seen in the bot output since the daemon started.', (inc) => {
    for (const b of bots()) inc(b.account, b.nonceErrors.total);
  });
}

/** Things that happened, counted from the event stream since the daemon started. */
function eventCounters(r: Registry, { tallies: t }: CollectorSource): void {
  tallyCounter(r, 'botwarden_duplicates_killed_total', 'Duplicate instances killed.', ['account'], t.duplicatesKilled);
  tallyCounter(r, 'botwarden_key_rotations_total', 'API keys rotated away from by the nonce circuit breaker.', ['account'], t.keyRotations);
  tallyCounter(r, 'botwarden_bot_unresponsive_total', 'Times a live bot was found unresponsive (liveness checks).', ['account'], t.unresponsive);
  tallyCounter(r, 'botwarden_fences_total', 'Bots stopped because their lease could not be renewed (PostgreSQL mode).', ['account'], t.fences);
}

/** The API keys' states. */
function keyMetrics(r: Registry, keys: MetricsDeps['keys']): void {
  new client.Gauge({
    name: 'botwarden_key_state',
    help: 'API key state: 1 for the current state, 0 for the others.',
    labelNames: ['key', 'state'],
    registers: [r],
    async collect() {
      this.reset();
      for (const k of await keys.list().catch(() => [])) for (const s of KEY_STATES) this.set({ key: k.id, state: s }, k.state === s ? 1 : 0);
    },
  });
}

/** The clock offsets to the exchanges (SPEC 17), when the daemon measures them. */
function clockMetrics(r: Registry, clock: MetricsDeps['clock']): void {
  if (!clock) return;
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

/** PostgreSQL mode: lease renewals and the leases held. */
function leaseMetrics(r: Registry, pg: PgLockBackend | null | undefined, bots: Bots): void {
  if (!pg) return;
  new client.Counter({
    name: 'botwarden_lease_renew_failures_total',
    help: 'Lease renewals that failed (PostgreSQL mode).',
    registers: [r],
    collect() {
      this.reset();
      this.inc(pg.stats.renewFailures);
    },
  });
  accountGauge(r, 'botwarden_lease_held', '1 when this daemon holds the account lease (PostgreSQL mode).', (set) => {
    const held = new Set(pg.fenceDeadlines().keys());
    for (const b of bots()) set(b.account, held.has(b.account) ? 1 : 0);
  });
}

/** The registry with every collector, in the order the exposition lists them. */
export function createRegistry(s: CollectorSource): MetricsRegistry {
  const r = new client.Registry();
  let scrapeBots: ReturnType<Supervisor['list']> | null = null;
  const bots: Bots = () => (scrapeBots ??= s.supervisor.list());
  processMetrics(r);
  botMetrics(r, s.supervisor, bots);
  eventCounters(r, s);
  keyMetrics(r, s.keys);
  tallyCounter(r, 'botwarden_alerts_sent_total', 'Alert deliveries by target and outcome (sent, failed, dropped).', ['alert', 'outcome'], s.alertsSent);
  clockMetrics(r, s.clock);
  new client.Gauge({ name: 'botwarden_build_info', help: 'The running version.', labelNames: ['version'], registers: [r] }).set({ version: s.version }, 1);
  leaseMetrics(r, s.pg, bots);
  return {
    text: () => {
      // A new view of the bots for each scrape.
      scrapeBots = null;
      return r.metrics();
    },
  };
}
