/**
 * A bot's output as the controller sees it: the log file followed line by
 * line, each line tested by the nonce-error circuit breaker (a hit is a
 * `nonce.error` event; a trip is handed back to the controller) and passed to
 * the daemon's other line scanners.
 */
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { Account } from '../config/schema.js';
import type { EventStore } from '../events/store.js';
import { sanitizeLine } from '../output/patterns.js';
import { LogTailer, type TailerGroup } from '../output/tailer.js';
import { NonceBreaker } from './breaker.js';
import type { BotKeys, BotListener } from './collaborators.js';

export interface OutputDeps {
  events: EventStore;
  logRotation: { maxBytes: number; files: number };
  /** The timers and read buffer every bot's tailer shares. */
  tailers: TailerGroup;
  keys: BotKeys;
  listener: BotListener;
}

/** The bot whose output this is: its account, the key it runs on now, and what a trip asks of it. */
export interface OutputOwner {
  readonly account: Account;
  readonly keyId: string | null;
  /** The breaker tripped: the controller stops the bot and rotates its key. */
  tripped(): void;
}

export class BotOutput {
  private tailer: LogTailer | null = null;
  private readonly breaker: NonceBreaker;
  /** When the bot last printed a complete line (clock ms): the liveness `silence` check. */
  lastLineAt: number | null = null;

  constructor(
    private readonly owner: OutputOwner,
    private readonly d: OutputDeps,
    private readonly log: Logger,
    private readonly clock: Clock,
  ) {
    this.breaker = new NonceBreaker(owner.account.nonceErrors, () => clock.now());
  }

  /** Nonce errors in the breaker's window, and since the daemon started. */
  nonceErrors(): { inWindow: number; total: number } {
    return { inWindow: this.breaker.inWindow(), total: this.breaker.total };
  }

  /** The errors in the window (a trip's diagnosis reads them). */
  recentErrors(): ReturnType<NonceBreaker['recent']> {
    return this.breaker.recent();
  }

  /** A new key or a fresh start: the window starts empty. */
  resetBreaker(): void {
    this.breaker.reset();
  }

  configure(cfg: Account['nonceErrors']): void {
    this.breaker.configure(cfg);
  }

  /**
   * Follows the file from `from` (where a process we just spawned began writing: the breaker may
   * trip again), or from its current end (an adopted bot: its old lines are not rescanned).
   */
  follow(logPath: string, from?: number): void {
    this.unfollow();
    if (from !== undefined) this.breaker.rearm();
    this.lastLineAt = null;
    this.tailer = new LogTailer(logPath, (line) => this.onLine(line), {
      ...this.d.logRotation,
      fromEnd: from === undefined,
      ...(from !== undefined ? { fromOffset: from } : {}),
      group: this.d.tailers,
      onError: (what, err) => this.log.warn({ err }, what),
    });
    this.tailer.start();
  }

  /** Reads what is left and stops following. */
  unfollow(): void {
    this.tailer?.stop();
    this.tailer = null;
  }

  private onLine(line: string): void {
    this.lastLineAt = this.clock.now();
    const id = this.owner.account.id;
    const hit = this.breaker.hit(line);
    if (hit) {
      const keyId = this.owner.keyId;
      if (keyId) this.d.keys.countNonceError(keyId);
      this.d.events.emit('nonce.error', { account: id, keyId, pattern: hit.pattern, kind: hit.kind, inWindow: hit.inWindow, line: sanitizeLine(line, this.d.keys.secretValues()) });
      // Failed calls count toward the exchange's lockout: stop at once, no retry on this key.
      if (hit.trip) this.owner.tripped();
    }
    this.d.listener.line(id, line);
  }
}
