/**
 * This machine's clock against the exchanges' (SPEC 17). A nonce or timestamp error that is a
 * clock problem (Binance -1021, OKX 50102, Coinbase "request timestamp expired") cannot be cured by
 * another key: each failed call only counts toward a lockout. So the daemon asks each exchange its
 * accounts use for the time, from its public server-time endpoint, and takes the middle of the
 * round trip as the moment the answer is for:
 *
 *   offsetMs = serverTime - (sentAt + receivedAt) / 2       (positive: this machine is behind)
 *
 * every `checkIntervalMs`, and at once (at most every MIN_GAP_MS per exchange) on a nonce error.
 * The exchanges are the accounts' `broker` fields that have a source (built in or configured).
 * An endpoint that gives whole seconds only (Kraken, a Date header) is good to ±500 ms; the
 * evidence says so. The machine's own sync status comes from timedatectl where it tells.
 */
import { ntpSynchronized } from '../host/tools.js';
import { brokerOf, type Config } from '../config/schema.js';

/** The preset exchanges' public server-time endpoints. */
export const DEFAULT_TIME_SOURCES: Readonly<Record<string, string>> = {
  kraken: 'https://api.kraken.com/0/public/Time',
  binance: 'https://api.binance.com/api/v3/time',
  bybit: 'https://api.bybit.com/v5/market/time',
  okx: 'https://www.okx.com/api/v5/public/time',
  kucoin: 'https://api.kucoin.com/api/v1/timestamp',
  coinbase: 'https://api.coinbase.com/api/v3/brokerage/time',
  // No time endpoint of its own: the Date header of its status answer (whole seconds).
  bitfinex: 'https://api-pub.bitfinex.com/v2/platform/status',
};

const MIN_GAP_MS = 10_000;
const TIMEOUT_MS = 5000;

export interface ClockOffset {
  broker: string;
  offsetMs: number | null;
  rttMs: number | null;
  at: string | null;
  error: string | null;
  /** How precise the server's answer is: 1 (ms) or 1000 (whole seconds). */
  resolutionMs?: number;
}

/** The server's time in ms from a time endpoint's JSON, or null when it is not one we know. */
export function serverTimeOf(body: unknown): { ms: number; resolutionMs: number } | null {
  const b = body as Record<string, any> | null;
  if (!b || typeof b !== 'object') return null;
  const num = (v: unknown) => (typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : null);
  // Binance {serverTime}, KuCoin {data}, OKX {data: [{ts}]}, Bybit {result: {timeNano}} or {time},
  // Coinbase {epochMillis}, Kraken {result: {unixtime}} (seconds).
  const ms = num(b.serverTime) ?? num(b.data) ?? num(b.data?.[0]?.ts) ?? num(b.epochMillis) ?? (num(b.result?.timeNano) !== null ? num(b.result.timeNano)! / 1e6 : null);
  if (ms !== null) return { ms, resolutionMs: 1 };
  const bybitTime = num(b.time);
  if (bybitTime !== null && bybitTime > 1e12) return { ms: bybitTime, resolutionMs: 1 };
  const secs = num(b.result?.unixtime) ?? num(b.epochSeconds);
  return secs !== null ? { ms: secs * 1000, resolutionMs: 1000 } : null;
}

export class ClockService {
  private readonly offsets = new Map<string, ClockOffset>();
  private readonly last = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private sync: boolean | null | undefined;

  constructor(private readonly config: () => Config) {}

  /** The brokers this daemon's accounts trade on (their `broker`, else their one preset), that have a source. */
  brokers(): string[] {
    const c = this.config();
    const out = new Set<string>();
    for (const a of c.accounts.values()) {
      const b = brokerOf(a);
      if (b && this.source(b)) out.add(b);
    }
    return [...out].sort();
  }

  source(broker: string): string | undefined {
    return this.config().clock.sources[broker] ?? DEFAULT_TIME_SOURCES[broker];
  }

  start(): void {
    this.stop();
    const every = this.config().clock.checkIntervalMs;
    void this.checkAll();
    this.timer = setInterval(() => void this.checkAll(), every);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  list(): { offsets: ClockOffset[]; sync: boolean | null } {
    return { offsets: this.brokers().map((b) => this.offsets.get(b) ?? { broker: b, offsetMs: null, rttMs: null, at: null, error: 'not measured yet' }), sync: this.syncStatus() };
  }

  get(broker: string): ClockOffset | undefined {
    return this.offsets.get(broker);
  }

  /** Measures one broker now (a nonce error): at most every MIN_GAP_MS, else the last figure. */
  async checkNow(broker: string): Promise<ClockOffset | undefined> {
    const since = performance.now() - (this.last.get(broker) ?? -Infinity);
    if (since < MIN_GAP_MS) return this.offsets.get(broker);
    return this.check(broker);
  }

  private async checkAll(): Promise<void> {
    await Promise.all(this.brokers().map((b) => this.check(b).catch(() => undefined)));
  }

  private async check(broker: string): Promise<ClockOffset | undefined> {
    const url = this.source(broker);
    if (!url) return undefined;
    this.last.set(broker, performance.now());
    const sent = Date.now();
    const t0 = performance.now();
    let r: ClockOffset;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS), headers: { accept: 'application/json' } });
      const rtt = performance.now() - t0;
      const mid = sent + rtt / 2;
      const text = await res.text();
      let parsed: { ms: number; resolutionMs: number } | null = null;
      try {
        parsed = serverTimeOf(JSON.parse(text));
      } catch {
        parsed = null;
      }
      const date = res.headers.get('date');
      if (!parsed && date && !Number.isNaN(Date.parse(date))) parsed = { ms: Date.parse(date), resolutionMs: 1000 };
      if (!parsed) throw new Error(`no server time in the answer (HTTP ${res.status})`);
      // Whole seconds: the true time is up to a second later than the figure; take the middle.
      const server = parsed.ms + (parsed.resolutionMs > 1 ? parsed.resolutionMs / 2 : 0);
      r = { broker, offsetMs: Math.round(server - mid), rttMs: Math.round(rtt), at: new Date().toISOString(), error: null, resolutionMs: parsed.resolutionMs };
    } catch (err) {
      r = { broker, offsetMs: this.offsets.get(broker)?.offsetMs ?? null, rttMs: null, at: new Date().toISOString(), error: (err as Error).message };
    }
    this.offsets.set(broker, r);
    return r;
  }

  /** timedatectl's NTPSynchronized where the machine runs systemd; null where nothing tells. */
  private syncStatus(): boolean | null {
    if (this.sync !== undefined) return this.sync;
    this.sync = ntpSynchronized();
    // Asked again at most every checkIntervalMs (the figure changes slowly).
    setTimeout(() => (this.sync = undefined), this.config().clock.checkIntervalMs).unref();
    return this.sync;
  }
}
