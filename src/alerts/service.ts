/**
 * Alert delivery, at least once: matching events go into the SQLite outbox in
 * the transaction that stores them (EventStore.setOutbox); a sender posts them
 * with growing delays, honours a 429's Retry-After, survives restarts (the
 * outbox is on disk), and drops an alert after 24 h with a logged reason.
 */
import type { Logger } from 'pino';
import type { AlertTarget, Config } from '../config/schema.js';
import type { AlertOutbox, OutboxRow } from '../db/alerts.js';
import type { BotwardenEvent } from '../events/types.js';
import { maskUrl, render } from './format.js';

export interface AlertState {
  name: string;
  format: AlertTarget['format'];
  url: string;
  state: 'ok' | 'failing' | 'idle';
  lastError: string | null;
  queued: number;
}

export interface AlertDeps {
  outbox: AlertOutbox;
  logger: Logger;
  daemonName: string;
  now?: () => number;
  /** Facts added to an alert when it is queued (a fatal bot's last exit and output). */
  enrich?: (e: BotwardenEvent) => Record<string, unknown>;
  onResult?: (alert: string, outcome: 'sent' | 'failed' | 'dropped') => void;
  /** Masks every secret (SPEC 15) in what is queued and in what is sent. */
  mask?: (text: string) => string;
  fetchTimeoutMs?: number;
}

const MAX_AGE_MS = 24 * 3600_000;

function matches(t: AlertTarget, type: string, account: string | undefined): boolean {
  if (!t.events.some((p) => type.startsWith(p))) return false;
  return !t.accounts || (account !== undefined && t.accounts.includes(account));
}
const MAX_DELAY_MS = 5 * 60_000;
/** Consecutive failures that make a target (and /health) degraded. */
const FAILING_AFTER = 2;

export class AlertService {
  private targets: Record<string, AlertTarget>;
  private readonly status = new Map<string, { failures: number; lastError: string | null; sent: number }>();
  private timer: NodeJS.Timeout | null = null;
  private sending = false;
  private stopped = false;
  private readonly now: () => number;

  constructor(
    config: Config,
    private readonly d: AlertDeps,
  ) {
    this.targets = config.alerts;
    this.now = d.now ?? Date.now;
  }

  /** Does any target want this event? (Checked before the event's transaction is opened.) */
  wants(type: string, account: string | undefined): boolean {
    for (const t of Object.values(this.targets)) if (matches(t, type, account)) return true;
    return false;
  }

  /** The outbox hook: runs inside the event's storing transaction. */
  enqueue(e: BotwardenEvent): void {
    let extra: Record<string, unknown> | null = null;
    for (const [name, t] of Object.entries(this.targets)) {
      if (!matches(t, e.type, e.account)) continue;
      extra ??= this.d.enrich?.(e) ?? {};
      this.d.outbox.enqueue(name, `${e.type}|${e.account ?? ''}`, this.mask(JSON.stringify({ ...e, ...extra })), this.now(), t.minIntervalMs);
    }
    if (extra) this.wake(0);
  }

  private mask(text: string): string {
    return this.d.mask ? this.d.mask(text) : text;
  }

  /** A test message to one target, not folded. */
  test(name: string): boolean {
    if (!this.targets[name]) return false;
    const e = { id: 0, type: 'test', at: new Date(this.now()).toISOString() };
    this.d.outbox.enqueue(name, `test|${this.now()}`, JSON.stringify(e), this.now(), 0);
    this.wake(0);
    return true;
  }

  setConfig(config: Config): void {
    this.targets = config.alerts;
  }

  start(): void {
    this.stopped = false;
    this.wake(0);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  list(): AlertState[] {
    const queued = this.d.outbox.queued();
    return Object.entries(this.targets).map(([name, t]) => {
      const s = this.status.get(name);
      const q = queued.get(name)?.n ?? 0;
      const state = s && s.failures >= FAILING_AFTER ? 'failing' : s && s.sent > 0 ? 'ok' : 'idle';
      return { name, format: t.format, url: maskUrl(t.url), state, lastError: s?.lastError ?? null, queued: q };
    });
  }

  /** Targets that keep failing (for /health). */
  failing(): string[] {
    return this.list().filter((a) => a.state === 'failing').map((a) => `${a.name} (${a.lastError ?? 'failing'}, ${a.queued} queued)`);
  }

  private wake(inMs: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.sendDue(), Math.max(0, inMs));
    this.timer.unref();
  }

  private async sendDue(): Promise<void> {
    if (this.sending || this.stopped) return;
    this.sending = true;
    try {
      for (let rows = this.d.outbox.due(this.now()); rows.length > 0 && !this.stopped; rows = this.d.outbox.due(this.now())) {
        await Promise.all(rows.map((r) => this.deliver(r)));
      }
    } catch (err) {
      this.d.logger.error({ err }, 'alert sender failed');
    } finally {
      this.sending = false;
    }
    if (this.stopped) return; // the daemon is closing its database
    try {
      const next = this.d.outbox.nextDue();
      if (next !== null) this.wake(Math.min(next - this.now(), MAX_DELAY_MS));
    } catch (err) {
      // Storage unusable (full, closed): the alerts stay queued on disk; look again later.
      this.d.logger.error({ err }, 'cannot read the alert outbox');
      this.wake(MAX_DELAY_MS);
    }
  }

  private async deliver(row: OutboxRow): Promise<void> {
    const t = this.targets[row.target];
    const log = this.d.logger.child({ alert: row.target });
    if (!t) {
      this.d.outbox.dropped(row);
      log.warn({ eventType: row.fold_key }, 'alert dropped: its target is no longer configured');
      return this.d.onResult?.(row.target, 'dropped');
    }
    if (this.now() - row.created_ms > MAX_AGE_MS) {
      this.d.outbox.dropped(row);
      log.error({ attempts: row.attempts, lastError: row.last_error, eventType: row.fold_key }, 'alert dropped: undeliverable for 24 hours');
      return this.d.onResult?.(row.target, 'dropped');
    }
    // Masked again on the way out (queued before a secret was known: a restart with a new .env). The
    // event, not the body: a Telegram body carries the chat id, which the service needs.
    const out = render(t, JSON.parse(this.mask(row.event)) as BotwardenEvent, this.d.daemonName, row.count);
    const st = this.status.get(row.target) ?? { failures: 0, lastError: null, sent: 0 };
    this.status.set(row.target, st);
    let retryAfterMs: number | null = null;
    let error: string;
    try {
      const res = await fetch(t.url, { method: 'POST', headers: out.headers, body: out.body, signal: AbortSignal.timeout(this.d.fetchTimeoutMs ?? 10_000), redirect: 'error' });
      await res.arrayBuffer().catch(() => undefined);
      if (res.ok) {
        this.d.outbox.delivered(row, this.now());
        st.failures = 0;
        st.lastError = null;
        st.sent++;
        return this.d.onResult?.(row.target, 'sent');
      }
      error = `HTTP ${res.status}`;
      if (res.status === 429) {
        const ra = Number(res.headers.get('retry-after'));
        if (Number.isFinite(ra) && ra >= 0) retryAfterMs = ra * 1000;
      }
    } catch (err) {
      // Never the URL (it holds the webhook's secret): only what went wrong.
      const e = err as Error & { cause?: { code?: string } };
      error = e.name === 'TimeoutError' ? 'timed out' : (e.cause?.code ?? e.name ?? 'request failed');
    }
    st.failures++;
    st.lastError = error;
    const delay = retryAfterMs ?? Math.min(MAX_DELAY_MS, 1000 * 2 ** row.attempts);
    this.d.outbox.retry(row, this.now() + delay, error);
    log.warn({ error, attempt: row.attempts + 1, retryInMs: delay }, 'alert delivery failed; will retry');
    this.d.onResult?.(row.target, 'failed');
  }
}
