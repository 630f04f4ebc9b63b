/**
 * What a bot's controller asks of the daemon besides processes (the ProcessHost) and storage: the
 * key pool and who listens to its processes and output. Interfaces, so the unit layer can give its
 * own and the daemon its real services.
 */
import type { Account } from '../config/schema.js';

/** The key pool as a bot needs it (the daemon's KeyPool). */
export interface BotKeys {
  /** The account's key candidates in order (missing ones left out); undefined: no pool. */
  candidates(account: Account): string[] | undefined;
  /** The leased key pair under the account's variable names (only for the spawn). */
  envFor(account: Account, keyId: string): Record<string, string>;
  /** Every key value: masked in what leaves the daemon. */
  secretValues(): readonly string[];
  countNonceError(keyId: string): void;
}

/** Who hears of every bot's process and output besides its controller. */
export interface BotListener {
  /** A bot's process exists (before its lock records it): the watchdog hears of it at once. */
  spawned(account: string): void;
  /** Every complete output line (the duplicate-suspect scanner hooks in here). */
  line(account: string, line: string): void;
}
