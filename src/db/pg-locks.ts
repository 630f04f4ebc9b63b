/**
 * PostgreSQL lease backend: account leases and key leases as rows shared by
 * every daemon on one database (never advisory locks, which vanish behind
 * PgBouncer and on a lost connection). Expiry is on the database clock
 * (clock_timestamp(), which moves inside a transaction), every grant bumps
 * the account's fencing token, rows are never deleted.
 *
 * Renewal and self-fencing: every `renewMs` one UPDATE extends exactly the
 * (account, token) pairs this daemon holds (never every row with our holder id:
 * a lease given up must run out). Each held lease keeps a local fence deadline, measured
 * from when the last successful renewal was *sent*:
 *   fenceAt = sent + leaseMs - (graceMs + kill + slack)
 * When it passes without a newer success, the lease is treated as lost and the
 * supervisor stops the bot (reason `fence`), so it is gone before the lease
 * can expire and be granted to another daemon.
 *
 * Every local deadline is on CLOCK_BOOTTIME (src/uptime.ts), which counts a
 * suspend: a laptop waking from sleep finds its deadlines passed. A jump of that
 * clock past performance.now() (the machine slept, or the daemon was paused) is
 * detected on the next check, which fences every lease whose deadline passed
 * before anything else of ours runs (renewals check first too), and reports
 * the wake. A lost lease keeps its kill deadline (for the watchdog) until the
 * supervisor says its bot's process is gone.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import type { Logger } from 'pino';
import { FENCE_KILL_MS, FENCE_SLACK_MS } from '../config/schema.js';
import { LockBackendError } from '../errors.js';
import { bootClock } from '../host/uptime.js';
import { REJECTED_UNTIL, type AcquireRequest, type AcquireResult, type KeyLease, type LockBackend, type LockRow } from './locks.js';

export interface PgLockOptions {
  url: string;
  leaseMs: number;
  renewMs: number;
  /** Unique per daemon process. */
  holderId: string;
  /** daemon.name, shown to people and other daemons. */
  name: string;
  host: string;
  /**
   * This daemon's identity across its runs, one two machines cannot share (src/identity.ts): only a
   * row carrying it may be judged against local /proc.
   */
  uid: string;
  logger: Logger;
  migrationsDir: string;
  /** The account's stop.graceMs (the fence budget). */
  graceOf: (account: string) => number;
  /** Boot-time ms (CLOCK_BOOTTIME, counts suspend); tests may drive it (a simulated wake). */
  boot?: () => number;
  /** Monotonic ms that stops during a suspend (performance.now): a wake is boot time running ahead of it. */
  mono?: () => number;
}

/** Boot time running ahead of performance.now() by more than this between two checks: the machine slept. */
export const WAKE_JUMP_MS = 250;

export interface WakeReport {
  /** How much longer the boot clock ran than the monotonic one (time suspended or paused). */
  sleptMs: number;
  /** Accounts whose lease deadline had passed: fenced at once. */
  fenced: string[];
}

export interface LeaseView {
  account: string;
  holder: string;
  host: string;
  since: string;
  expiresAt: string;
  token: number;
  mine: boolean;
  instanceId: string | null;
}

interface Held {
  token: number;
  /** Boot time the last successful renewal (or the grant) was sent. */
  sent: number;
}

interface Lost {
  token: number;
  /** Boot time by which its bot must be dead (the lease may be granted elsewhere after). */
  killAt: number;
}

interface Row {
  account: string;
  token: string;
  holder_id: string | null;
  holder_name: string | null;
  host: string | null;
  broker_username: string;
  instance_id: string | null;
  pid: number | null;
  start_ticks: string | null;
  holder_uid?: string | null;
  since: Date | null;
  expires_at: Date | null;
  live?: boolean;
}

const toLock = (r: Row): LockRow => ({
  account: r.account,
  holder: r.holder_name ?? '',
  host: r.host ?? undefined,
  instanceId: r.instance_id,
  pid: r.pid,
  startTicks: r.start_ticks === null ? null : Number(r.start_ticks),
  brokerUsername: r.broker_username,
  createdAt: (r.since ?? new Date(0)).toISOString(),
  token: Number(r.token),
});

const LIVE = 'holder_id IS NOT NULL AND expires_at > clock_timestamp()';

/**
 * The server-side limits every botwarden session runs with (sent as startup parameters). With
 * them, no session of any daemon can sit in a transaction holding a lease row's lock for longer
 * than about one renewal period, so no peer can keep another daemon's renewal from its rows.
 */
export function sessionTimeouts(renewMs: number): { statement_timeout: number; lock_timeout: number; idle_in_transaction_session_timeout: number } {
  const timeout = Math.max(500, Math.min(renewMs, 5000));
  return { statement_timeout: timeout, lock_timeout: Math.max(100, Math.floor(timeout / 2)), idle_in_transaction_session_timeout: timeout };
}

export class PgLockBackend implements LockBackend {
  readonly kind = 'postgres';
  private readonly pool: pg.Pool;
  private readonly held = new Map<string, Held>();
  /** Leases given up (fenced) whose bot may still run: their kill deadline stays for the watchdog. */
  private readonly lost = new Map<string, Lost>();
  private readonly lostHandlers: ((account: string, token: number, reason: string, urgent: boolean) => void)[] = [];
  private readonly wakeHandlers: ((w: WakeReport) => void)[] = [];
  private lastCheck: { boot: number; mono: number } | null = null;
  private lastError: string | null = 'not connected yet';
  private migrated = false;
  private renewing = false;
  private timers: NodeJS.Timeout[] = [];
  private cache: LeaseView[] = [];
  /** The holder identity of each row handed out (LockRow has no field for it). */
  private readonly uidOf = new WeakMap<LockRow, string | null>();
  private readonly boot: () => number;
  private readonly mono: () => number;
  /** Counters for /metrics. */
  readonly stats = { renewFailures: 0, fences: 0, wakes: 0 };

  constructor(private readonly o: PgLockOptions) {
    this.boot = o.boot ?? bootClock;
    this.mono = o.mono ?? (() => performance.now());
    const t = sessionTimeouts(o.renewMs);
    this.pool = new pg.Pool({
      connectionString: o.url,
      max: 4,
      // A half-open connection must never hang a renewal: every wait is bounded.
      connectionTimeoutMillis: t.statement_timeout,
      query_timeout: t.statement_timeout,
      // Set on the server session (startup parameters): a daemon that stalls inside a transaction
      // (a laptop asleep mid-acquire) has its session, and the row locks it holds, ended by the
      // server; a lock wait never outlasts a renewal period.
      ...t,
      keepAlive: true,
      keepAliveInitialDelayMillis: 1000,
      idleTimeoutMillis: 10_000,
      application_name: `botwarden ${o.name}`,
    });
    this.pool.on('error', (err) => this.fail(err));
    // A connection reset while a client is checked out (inside a transaction) is emitted on that
    // client, where the pool listens no more: without a listener of its own it would crash the
    // daemon (the PostgreSQL chaos walk found this: seed 7777, a reset partition). The query under
    // way fails on its own and is handled where it was made.
    this.pool.on('connect', (client) => client.on('error', (err) => this.fail(err)));
  }

  /** Starts renewing and watching fence deadlines; never throws (a down database shows in /health). */
  async start(): Promise<void> {
    await this.renew();
    this.timers.push(setInterval(() => void this.renew(), this.o.renewMs).unref());
    this.timers.push(setInterval(() => this.checkFences(), Math.min(100, this.o.renewMs)).unref());
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await this.pool.end().catch(() => undefined);
  }

  /**
   * `urgent`: the lease may already be another daemon's (a wake past its deadline, or a renewal that
   * found it gone): the bot must die now, not after its grace.
   */
  onLost(handler: (account: string, token: number, reason: string, urgent: boolean) => void): void {
    this.lostHandlers.push(handler);
  }

  /** A wake (the boot clock jumped past the monotonic one): after the fences it caused. */
  onWake(handler: (w: WakeReport) => void): void {
    this.wakeHandlers.push(handler);
  }

  /** The boot-time clock every deadline here is on (the watchdog's heartbeat is measured on it). */
  now(): number {
    return this.boot();
  }

  /** Boot-time fence deadline per held account. */
  fenceDeadlines(): Map<string, number> {
    return new Map([...this.held].map(([a, h]) => [a, this.fenceAt(a, h)]));
  }

  /**
   * Boot time by which the account's bot must be dead: the lease could be granted elsewhere after.
   * A lost lease keeps the deadline it had until `processGone` (its bot may outlive the fence).
   */
  killDeadline(account: string): number | null {
    const h = this.held.get(account);
    if (h) return h.sent + this.o.leaseMs - FENCE_SLACK_MS;
    return this.lost.get(account)?.killAt ?? null;
  }

  /** The account's bot has no process left: a lost lease's kill deadline is no longer needed. */
  processGone(account: string): void {
    this.lost.delete(account);
  }

  /** Accounts whose lease was lost and whose bot may still run. */
  lostAccounts(): string[] {
    return [...this.lost.keys()];
  }

  stillHeld(account: string, token: number): boolean {
    return this.held.get(account)?.token === token;
  }

  /**
   * Written by this daemon or an earlier run of it: by its identity, never by name and host (two
   * machines can share both, and the other's pids mean nothing in our /proc). A row not handed out
   * by this backend is never ours.
   */
  isOurs(row: LockRow): boolean {
    return this.uidOf.get(row) === this.o.uid;
  }

  private toLock(r: Row): LockRow {
    const row = toLock(r);
    this.uidOf.set(row, r.holder_uid ?? null);
    return row;
  }

  /** Every live lease on the database (cached from the last renewal tick). */
  leases(): LeaseView[] {
    if (this.lastError !== null) throw new LockBackendError(this.lastError);
    return this.cache;
  }

  /** True when this instance id runs under a live lease, whoever holds it (not a duplicate). */
  async isLeasedInstance(instanceId: string, youngOf: string | null = null): Promise<boolean> {
    if (this.cache.some((l) => l.instanceId === instanceId || (youngOf !== null && l.account === youngOf))) return true;
    const r = await this.q<{ n: string }>(`SELECT count(*) AS n FROM botwarden_account_leases WHERE (instance_id = $1 OR account = $2) AND ${LIVE}`, [instanceId, youngOf]);
    return Number(r.rows[0]?.n ?? 0) > 0;
  }

  async acquire(req: AcquireRequest): Promise<AcquireResult> {
    const sent = this.boot();
    const res = await this.tx(async (c) => {
      await c.query('INSERT INTO botwarden_account_leases (account) VALUES ($1) ON CONFLICT (account) DO NOTHING', [req.account]);
      const cur = (await c.query<Row>(`SELECT *, (${LIVE}) AS live FROM botwarden_account_leases WHERE account = $1 FOR UPDATE`, [req.account])).rows[0]!;
      let staleRemoved: LockRow | null = null;
      if (cur.live) {
        const row = this.toLock(cur);
        // Only a lease left by an earlier run of this very daemon is judged by /proc (its bots died with
        // it); any other daemon's lease, even on this machine, runs out by itself on the database clock.
        if (!(this.isOurs(row) && (row.pid === null || req.isStale(row)))) return { ok: false as const, heldBy: row };
        staleRemoved = row;
      }
      let keyId: string | null = null;
      if (req.keys !== undefined) {
        keyId = await this.firstFreeKey(c, req.keys);
        // Nothing is written when no key is free: the whole start is refused.
        if (keyId === null) return { ok: false as const, noFreeKey: true as const };
      }
      const granted = (
        await c.query<Row>(
          `UPDATE botwarden_account_leases SET token = token + 1, holder_id = $2, holder_name = $3, host = $4, broker_username = $5, holder_uid = $7,
             instance_id = NULL, pid = NULL, start_ticks = NULL, since = clock_timestamp(), expires_at = clock_timestamp() + make_interval(secs => $6::float8 / 1000)
           WHERE account = $1 RETURNING *`,
          [req.account, this.o.holderId, this.o.name, this.o.host, req.brokerUsername, this.o.leaseMs, this.o.uid],
        )
      ).rows[0]!;
      const lock = this.toLock(granted);
      if (keyId !== null) {
        await c.query('UPDATE botwarden_key_leases SET account = $2, lock_token = $3 WHERE key_id = $1', [keyId, req.account, lock.token]);
      }
      return { ok: true as const, lock, staleRemoved, keyId };
    });
    if (res.ok) {
      this.held.set(req.account, { token: res.lock.token, sent });
      // A new grant: its bot is spawned only once any earlier one is gone, but the deadline of an
      // older lost lease must not outlive it unnoticed; the new lease's own deadline is later.
      this.lost.delete(req.account);
    }
    return res;
  }

  async attach(account: string, token: number, p: { instanceId: string; pid: number; startTicks: number | null }): Promise<void> {
    const r = await this.q(
      `UPDATE botwarden_account_leases SET instance_id = $3, pid = $4, start_ticks = $5 WHERE account = $1 AND token = $2 AND holder_id = $6 AND ${LIVE}`,
      [account, token, p.instanceId, p.pid, p.startTicks, this.o.holderId],
    );
    if (r.rowCount === 0) throw new LockBackendError(`the lease of '${account}' (token ${token}) is no longer ours`);
  }

  async release(account: string, token: number): Promise<boolean> {
    const h = this.held.get(account);
    if (h?.token === token) this.held.delete(account);
    // Expired now, keeping the token; key leases under it stop being valid with it.
    const r = await this.q(
      'UPDATE botwarden_account_leases SET holder_id = NULL, expires_at = clock_timestamp(), instance_id = NULL, pid = NULL WHERE account = $1 AND token = $2',
      [account, token],
    );
    return (r.rowCount ?? 0) > 0;
  }

  async get(account: string): Promise<LockRow | null> {
    const r = await this.q<Row>(`SELECT * FROM botwarden_account_leases WHERE account = $1 AND ${LIVE}`, [account]);
    return r.rows[0] ? this.toLock(r.rows[0]) : null;
  }

  async list(): Promise<LockRow[]> {
    return (await this.q<Row>(`SELECT * FROM botwarden_account_leases WHERE ${LIVE} ORDER BY account`)).rows.map((x) => this.toLock(x));
  }

  async count(): Promise<number> {
    const r = await this.q<{ n: string }>(`SELECT count(*) AS n FROM botwarden_account_leases WHERE ${LIVE}`);
    return Number(r.rows[0]?.n ?? 0);
  }

  async check(): Promise<void> {
    if (this.lastError !== null) throw new LockBackendError(this.lastError);
  }

  async rotateKey(account: string, token: number, from: string, coolUntilMs: number, candidates: readonly string[], nowMs: number): Promise<string | null> {
    return this.tx(async (c) => {
      const mine = await c.query(`SELECT 1 FROM botwarden_account_leases WHERE account = $1 AND token = $2 AND ${LIVE}`, [account, token]);
      if (mine.rowCount === 0) return null;
      // Every key row this rotation touches, locked up front in key order (as acquire does): no deadlock.
      await this.lockKeys(c, [from, ...candidates]);
      // A rejected key rests until an operator enables it: until 'infinity'.
      const rejected = coolUntilMs >= REJECTED_UNTIL;
      await c.query(
        `INSERT INTO botwarden_key_cooldowns (key_id, until, reason)
           VALUES ($1, CASE WHEN $3::boolean THEN 'infinity'::timestamptz ELSE clock_timestamp() + make_interval(secs => $2::float8 / 1000) END, $4)
         ON CONFLICT (key_id) DO UPDATE SET until = excluded.until, reason = excluded.reason`,
        [from, rejected ? 0 : Math.max(0, coolUntilMs - nowMs), rejected, rejected ? 'rejected' : 'rotation'],
      );
      await c.query('UPDATE botwarden_key_leases SET account = NULL, lock_token = NULL WHERE key_id = $1 AND account = $2 AND lock_token = $3', [from, account, token]);
      const next = await this.firstFreeKey(
        c,
        candidates.filter((k) => k !== from),
      );
      if (next !== null) await c.query('UPDATE botwarden_key_leases SET account = $2, lock_token = $3 WHERE key_id = $1', [next, account, token]);
      return next;
    });
  }

  async enableKey(keyId: string): Promise<boolean> {
    const r = await this.q(`DELETE FROM botwarden_key_cooldowns WHERE key_id = $1 AND until = 'infinity'::timestamptz`, [keyId]);
    return (r.rowCount ?? 0) > 0;
  }

  async keyLeases(): Promise<KeyLease[]> {
    const r = await this.q<{ key_id: string; account: string; lock_token: string }>(
      `SELECT kl.key_id, kl.account, kl.lock_token FROM botwarden_key_leases kl JOIN botwarden_account_leases al
         ON al.account = kl.account AND al.token = kl.lock_token AND al.holder_id IS NOT NULL AND al.expires_at > clock_timestamp() ORDER BY kl.key_id`,
    );
    return r.rows.map((x) => ({ keyId: x.key_id, account: x.account, lockToken: Number(x.lock_token) }));
  }

  async cooldowns(nowMs: number): Promise<Map<string, number>> {
    // Cooldowns end on the database clock; translated to the caller's clock.
    const r = await this.q<{ key_id: string; left_ms: number }>(
      'SELECT key_id, (extract(epoch FROM until - clock_timestamp()) * 1000)::float8 AS left_ms FROM botwarden_key_cooldowns WHERE until > clock_timestamp()',
    );
    return new Map(r.rows.map((x) => [x.key_id, nowMs + Math.round(x.left_ms)]));
  }

  // ---- internals -------------------------------------------------------

  /**
   * The first candidate neither leased under a live lease nor cooling. Every candidate's row is
   * locked first, in one statement and in key order (two daemons leasing overlapping pools can
   * neither deadlock nor both see a key free); only then are they judged, in preference order.
   */
  private async firstFreeKey(c: pg.PoolClient, candidates: readonly string[]): Promise<string | null> {
    if (candidates.length === 0) return null;
    await this.lockKeys(c, candidates);
    const taken = await c.query<{ key_id: string }>(
      `SELECT kl.key_id FROM botwarden_key_leases kl WHERE kl.key_id = ANY($1::text[]) AND (
         EXISTS (SELECT 1 FROM botwarden_account_leases al WHERE al.account = kl.account AND al.token = kl.lock_token AND al.holder_id IS NOT NULL AND al.expires_at > clock_timestamp())
         OR EXISTS (SELECT 1 FROM botwarden_key_cooldowns cd WHERE cd.key_id = kl.key_id AND cd.until > clock_timestamp()))`,
      [candidates],
    );
    const busy = new Set(taken.rows.map((r) => r.key_id));
    return candidates.find((k) => !busy.has(k)) ?? null;
  }

  private async lockKeys(c: pg.PoolClient, unsorted: readonly string[]): Promise<void> {
    const keys = [...new Set(unsorted)].sort();
    await c.query('INSERT INTO botwarden_key_leases (key_id) SELECT unnest($1::text[]) ON CONFLICT (key_id) DO NOTHING', [keys]);
    await c.query('SELECT key_id FROM botwarden_key_leases WHERE key_id = ANY($1::text[]) ORDER BY key_id FOR UPDATE', [keys]);
  }

  private fenceAt(account: string, h: Held): number {
    return h.sent + this.o.leaseMs - (this.o.graceOf(account) + FENCE_KILL_MS + FENCE_SLACK_MS);
  }

  /** Fences every held lease whose deadline passed; first notices a wake (the boot clock ran ahead). */
  private checkFences(): void {
    const now = this.boot();
    const mono = this.mono();
    const last = this.lastCheck;
    this.lastCheck = { boot: now, mono };
    const sleptMs = last ? now - last.boot - (mono - last.mono) : 0;
    const woke = sleptMs > WAKE_JUMP_MS;
    const fenced: string[] = [];
    for (const [account, h] of this.held) {
      if (now < this.fenceAt(account, h)) continue;
      fenced.push(account);
      this.lose(account, h.token, woke ? `the machine was suspended or paused for ${Math.round(sleptMs)} ms: the lease may have lapsed` : (this.lastError ?? 'lease not renewed in time'), woke);
    }
    if (!woke) return;
    this.stats.wakes++;
    this.o.logger.warn({ sleptMs: Math.round(sleptMs), fenced }, 'the machine was suspended or paused: leases whose deadline passed are fenced');
    for (const h of this.wakeHandlers) h({ sleptMs: Math.round(sleptMs), fenced });
  }

  private lose(account: string, token: number, reason: string, urgent = false): void {
    const h = this.held.get(account);
    if (h?.token !== token) return;
    this.held.delete(account);
    this.lost.set(account, { token, killAt: h.sent + this.o.leaseMs - FENCE_SLACK_MS });
    this.stats.fences++;
    this.o.logger.error({ account, token, reason }, 'lease lost: stopping the bot (self-fencing)');
    for (const h of this.lostHandlers) h(account, token, reason, urgent);
  }

  private async renew(): Promise<void> {
    // A lapsed deadline is acted on before any renewal is sent (after a wake, this may run first).
    this.checkFences();
    if (this.renewing) return;
    this.renewing = true;
    const sent = this.boot();
    const before = new Map(this.held);
    try {
      await this.ensureMigrated();
      // Exactly the (account, token) pairs we hold: a lease given up (fenced, or released while the
      // database was unreachable) is never extended again and runs out on the database clock.
      const pairs = [...before];
      // A row another session has locked (a peer inside an acquire) is skipped, never waited for:
      // one stuck peer must not hold back the renewal of every other lease. A skipped row is
      // reported `busy` (still ours and live): it is not lost, and its fence deadline keeps running.
      const r =
        pairs.length === 0
          ? { rows: [] }
          : await this.pool.query<{ account: string; token: string; renewed: boolean }>(
              `WITH mine AS (
                 SELECT s.account, s.token FROM botwarden_account_leases s
                   JOIN unnest($3::text[], $4::bigint[]) AS h(account, token) ON s.account = h.account AND s.token = h.token
                  WHERE s.holder_id = $1 AND s.expires_at > clock_timestamp()),
               got AS (
                 SELECT s.account FROM botwarden_account_leases s JOIN mine ON s.account = mine.account AND s.token = mine.token
                  WHERE s.holder_id = $1 AND s.expires_at > clock_timestamp() FOR UPDATE OF s SKIP LOCKED),
               upd AS (
                 UPDATE botwarden_account_leases l SET expires_at = clock_timestamp() + make_interval(secs => $2::float8 / 1000)
                   FROM got WHERE l.account = got.account RETURNING l.account, l.token)
               SELECT account, token, true AS renewed FROM upd
               UNION ALL
               SELECT account, token, false AS renewed FROM mine WHERE account NOT IN (SELECT account FROM got)`,
              [this.o.holderId, this.o.leaseMs, pairs.map(([a]) => a), pairs.map(([, h]) => h.token)],
            );
      const renewed = new Set(r.rows.filter((x) => x.renewed).map((x) => `${x.account}:${Number(x.token)}`));
      const busy = new Set(r.rows.filter((x) => !x.renewed).map((x) => `${x.account}:${Number(x.token)}`));
      for (const [account, h] of before) {
        if (this.held.get(account) !== h) continue; // released or re-granted meanwhile
        const key = `${account}:${h.token}`;
        if (renewed.has(key)) h.sent = Math.max(h.sent, sent);
        else if (busy.has(key)) this.o.logger.warn({ account, token: h.token }, 'lease row locked by another session: not renewed this time');
        else this.lose(account, h.token, 'the lease is gone from the database (expired or taken)', true);
      }
      const all = await this.pool.query<Row>(`SELECT * FROM botwarden_account_leases WHERE ${LIVE} ORDER BY account`);
      this.cache = all.rows.map((x) => ({
        account: x.account,
        holder: x.holder_name ?? '',
        host: x.host ?? '',
        since: (x.since ?? new Date(0)).toISOString(),
        expiresAt: (x.expires_at ?? new Date(0)).toISOString(),
        token: Number(x.token),
        mine: x.holder_id === this.o.holderId,
        instanceId: x.instance_id,
      }));
      if (this.lastError !== null) this.o.logger.info('lock backend reachable again');
      this.lastError = null;
    } catch (err) {
      this.stats.renewFailures++;
      this.fail(err);
    } finally {
      this.renewing = false;
    }
  }

  private fail(err: unknown): void {
    const msg = this.mask((err as Error).message ?? String(err));
    if (this.lastError !== msg) this.o.logger.warn({ error: msg }, 'lock backend unreachable');
    this.lastError = msg;
  }

  /** The URL's password never reaches a message. */
  private mask(msg: string): string {
    let pw = '';
    try {
      pw = decodeURIComponent(new URL(this.o.url).password);
    } catch {
      // not a URL: nothing to mask
    }
    return pw ? msg.split(pw).join('***') : msg;
  }

  private async ensureMigrated(): Promise<void> {
    if (this.migrated) return;
    const files = readdirSync(this.o.migrationsDir).filter((f) => /^\d+_.*\.sql$/.test(f)).sort();
    await this.tx(async (c) => {
      // One daemon migrates at a time (a transaction-scoped lock: gone with the transaction).
      await c.query('SELECT pg_advisory_xact_lock(727364)');
      await c.query('CREATE TABLE IF NOT EXISTS botwarden_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT clock_timestamp())');
      const done = new Set((await c.query<{ version: number }>('SELECT version FROM botwarden_migrations')).rows.map((x) => x.version));
      for (const f of files) {
        const n = Number(f.split('_')[0]);
        if (done.has(n)) continue;
        await c.query(readFileSync(path.join(this.o.migrationsDir, f), 'utf8'));
        await c.query('INSERT INTO botwarden_migrations (version) VALUES ($1)', [n]);
      }
    }, false);
    this.migrated = true;
  }

  private async q<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    try {
      await this.ensureMigrated();
      return await this.pool.query<R>(sql, params);
    } catch (err) {
      this.fail(err);
      throw new LockBackendError(this.mask((err as Error).message), { cause: err });
    }
  }

  private async tx<T>(fn: (c: pg.PoolClient) => Promise<T>, migrate = true): Promise<T> {
    let c: pg.PoolClient | undefined;
    let broken: Error | undefined;
    try {
      if (migrate) await this.ensureMigrated();
      c = await this.pool.connect();
      await c.query('BEGIN');
      const out = await fn(c);
      await c.query('COMMIT');
      return out;
    } catch (err) {
      broken = err as Error;
      await c?.query('ROLLBACK').catch(() => undefined);
      this.fail(err);
      throw new LockBackendError(this.mask(broken.message), { cause: err });
    } finally {
      c?.release(broken);
    }
  }
}
