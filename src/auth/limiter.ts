/**
 * Brute force (SPEC 18): ten failed authentications from one address within a minute, and that
 * address is refused (429, Retry-After) until the window frees, i.e. until the oldest of those ten
 * is a minute old. In memory and bounded: at most `maxAddresses` addresses are tracked (the one
 * that failed longest ago is forgotten first), each with at most `maxFailures` times.
 */
export interface LimiterOptions {
  maxFailures?: number;
  windowMs?: number;
  maxAddresses?: number;
  /** Monotonic milliseconds. */
  now: () => number;
  /** Called once per window when an address gets blocked. */
  onBlock?: (remote: string, retryAfterMs: number) => void;
}

export interface Block {
  retryAfterMs: number;
  /** The first refusal of this window (the one that is audited). */
  first: boolean;
}

interface Entry {
  times: number[];
  /** The end of the window whose first refusal was already answered. */
  reported: number;
}

export class FailureLimiter {
  private readonly entries = new Map<string, Entry>();
  readonly maxFailures: number;
  readonly windowMs: number;
  readonly maxAddresses: number;

  constructor(private readonly o: LimiterOptions) {
    this.maxFailures = o.maxFailures ?? 10;
    this.windowMs = o.windowMs ?? 60_000;
    this.maxAddresses = o.maxAddresses ?? 10_000;
  }

  /** Null when the address may try; else how long it must wait. */
  blocked(remote: string): Block | null {
    const e = this.entries.get(remote);
    if (!e || e.times.length < this.maxFailures) return null;
    const until = e.times[0]! + this.windowMs;
    const now = this.o.now();
    if (now >= until) return null;
    const first = e.reported !== until;
    e.reported = until;
    return { retryAfterMs: until - now, first };
  }

  /** A failed authentication from this address. */
  fail(remote: string): void {
    const now = this.o.now();
    let e = this.entries.get(remote);
    if (e) this.entries.delete(remote); // re-inserted last: the map stays ordered by last failure
    else e = { times: [], reported: 0 };
    e.times = e.times.filter((t) => now - t < this.windowMs);
    e.times.push(now);
    if (e.times.length > this.maxFailures) e.times.splice(0, e.times.length - this.maxFailures);
    this.entries.set(remote, e);
    // Ordered by last failure: forget the addresses whose failures are all out of the window, then the oldest beyond the cap.
    for (const [k, old] of this.entries) {
      if (this.entries.size > this.maxAddresses || now - old.times[old.times.length - 1]! >= this.windowMs) this.entries.delete(k);
      else break;
    }
    if (e.times.length === this.maxFailures) this.o.onBlock?.(remote, e.times[0]! + this.windowMs - now);
  }

  /** Addresses tracked (tests, bounds). */
  get size(): number {
    return this.entries.size;
  }
}
