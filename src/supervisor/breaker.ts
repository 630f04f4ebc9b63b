/**
 * The nonce-error circuit breaker of one bot : its compiled
 * patterns, a sliding window of matches, and the decision to trip. It knows
 * nothing of processes or keys; the BotController acts on a trip.
 */
import type { Account } from '../config/schema.js';
import { compilePatterns, firstMatch, type CompiledPattern, type ErrorKind } from '../output/patterns.js';

export interface Hit {
  pattern: string;
  /** What the line says: a bad nonce or timestamp, a rejected key, a rate limit (SPEC 17). */
  kind: ErrorKind;
  /** The line that matched (for the diagnosis's evidence). */
  line: string;
  inWindow: number;
  /** True once per armed breaker, when `rotateAfter` matches fall within `windowMs`. */
  trip: boolean;
}

export class NonceBreaker {
  private patterns: CompiledPattern[];
  private window: { at: number; kind: ErrorKind; line: string }[] = [];
  private tripped = false;
  total = 0;

  constructor(
    private cfg: Account['nonceErrors'],
    private readonly now: () => number,
  ) {
    this.patterns = compilePatterns(cfg.patterns);
  }

  configure(cfg: Account['nonceErrors']): void {
    this.cfg = cfg;
    this.patterns = compilePatterns(cfg.patterns);
  }

  inWindow(): number {
    const since = this.now() - this.cfg.windowMs;
    this.window = this.window.filter((h) => h.at > since);
    return this.window.length;
  }

  /** The matches in the window now: what the diagnosis of a trip looks at. */
  recent(): readonly { kind: ErrorKind; line: string }[] {
    this.inWindow();
    return this.window;
  }

  /** Tests one output line; null when it is not a nonce / API-key error. */
  hit(line: string): Hit | null {
    if (this.patterns.length === 0) return null;
    const m = firstMatch(this.patterns, line);
    if (!m) return null;
    this.window.push({ at: this.now(), kind: m.kind, line });
    this.total++;
    const inWindow = this.inWindow();
    const trip = !this.tripped && inWindow >= this.cfg.rotateAfter;
    if (trip) this.tripped = true;
    return { pattern: m.name, kind: m.kind, line, inWindow, trip };
  }

  /** A new process: the breaker may trip again (failed calls on the old one still count). */
  rearm(): void {
    this.tripped = false;
  }

  /** A new key: its window starts empty. */
  reset(): void {
    this.window = [];
    this.tripped = false;
  }
}
