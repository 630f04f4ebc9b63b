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

export interface OutputDeps {
  events: EventStore;
  logRotation: { maxBytes: number; files: number };
  /** The timers and read buffer every bot's tailer shares. */
  tailers: TailerGroup;
  secretValues: () => readonly string[];
  countNonceError: (keyId: string) => void;
  /** Every complete output line of the bot (the duplicate-suspect scanner hooks in here). */
  onLine: (account: string, line: string) => void;
}

export class BotOutput {
  private tailer: LogTailer | null = null;
  readonly breaker: NonceBreaker;
  /** When the bot last printed a complete line (clock ms): the liveness `silence` check. */
  lastLineAt: number | null = null;

  constructor(
    private readonly account: () => Account,
    private readonly d: OutputDeps,
    private readonly log: Logger,
    private readonly clock: Clock,
    /** The key the bot runs on now (for the event and the key's counter). */
    private readonly keyId: () => string | null,
    /** The breaker tripped: the controller stops the bot and rotates its key. */
    private readonly onTrip: () => void,
  ) {
    this.breaker = new NonceBreaker(account().nonceErrors, () => clock.now());
  }

  /**
   * Follows the file from `from` (where a process we just spawned began writing), or from its
   * current end (an adopted bot: its old lines are not rescanned).
   */
  follow(logPath: string, from?: number): void {
    this.unfollow();
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
    const id = this.account().id;
    const hit = this.breaker.hit(line);
    if (hit) {
      const keyId = this.keyId();
      if (keyId) this.d.countNonceError(keyId);
      this.d.events.emit('nonce.error', { account: id, keyId, pattern: hit.pattern, kind: hit.kind, inWindow: hit.inWindow, line: sanitizeLine(line, this.d.secretValues()) });
      // Failed calls count toward the exchange's lockout: stop at once, no retry on this key.
      if (hit.trip) this.onTrip();
    }
    this.d.onLine(id, line);
  }
}
