/**
 * Why the nonce breaker tripped (SPEC 17), told from what the daemon can see: the kind of the
 * errors in the window, this machine's clock against the exchange's, and the processes on this
 * machine that hold the key. Pure: the controller gathers the facts and acts on the answer.
 *
 *   key-rejected  the errors say the key itself is refused (invalid, signature, permission, IP)
 *   clock         the clock is over maxOffsetMs off the exchange's: no key can help
 *   shared-key    another process here holds the key's value
 *   unknown       none of these: rotate as before, and say what was ruled out
 */
import type { ErrorKind } from '../output/patterns.js';

export const NONCE_CAUSES = ['clock', 'shared-key', 'key-rejected', 'unknown'] as const;
export type NonceCause = (typeof NONCE_CAUSES)[number];

export interface Holder {
  pid: number;
  startTicks: number;
  cmdline: string;
}

export interface DiagnosisFacts {
  account: string;
  keyId: string | null;
  /** The exchange as people name it (its broker), or null. */
  exchange: string | null;
  errors: readonly { kind: ErrorKind; line: string }[];
  /** The exchange's time minus ours (positive: we are behind), or null when not known. */
  offsetMs: number | null;
  /** Why the offset is not known (no source, the measurement failed), when it is not. */
  offsetError?: string | null;
  maxOffsetMs: number;
  holders: readonly Holder[];
}

export interface Diagnosis {
  cause: NonceCause;
  /** In words, for the event, the alert and the bot's fatal message. */
  evidence: string;
}

const title = (s: string | null) => (s ? s.charAt(0).toUpperCase() + s.slice(1) : 'the exchange');

/** "2.4 s ahead of" / "800 ms behind": how far this machine is from the exchange. */
export function offsetWords(offsetMs: number, exchange: string | null): string {
  const a = Math.abs(offsetMs);
  const amount = a >= 1000 ? `${(a / 1000).toFixed(1)} s` : `${Math.round(a)} ms`;
  return `${amount} ${offsetMs < 0 ? 'ahead of' : 'behind'} ${title(exchange)}`;
}

export function diagnose(f: DiagnosisFacts): Diagnosis {
  const key = f.keyId ?? '(no key)';
  const keyErrors = f.errors.filter((e) => e.kind === 'key');
  if (keyErrors.length > 0 && keyErrors.length * 2 >= f.errors.length) {
    const sample = keyErrors.at(-1)!.line.slice(0, 160);
    return {
      cause: 'key-rejected',
      evidence: `${title(f.exchange)} rejected key ${key} (${keyErrors.length} of ${f.errors.length} errors say so, e.g. "${sample}"): it is set aside until an operator enables it (POST /keys/${key}/enable).`,
    };
  }
  if (f.offsetMs !== null && Math.abs(f.offsetMs) > f.maxOffsetMs) {
    return {
      cause: 'clock',
      evidence: `this machine's clock is ${offsetWords(f.offsetMs, f.exchange)} (more than ${f.maxOffsetMs} ms): no key can fix that, keys were not rotated. Fix time sync (chrony, systemd-timesyncd).`,
    };
  }
  const clockWords =
    f.offsetMs !== null ? `the clock is within ${f.maxOffsetMs} ms of ${title(f.exchange)} (${f.offsetMs > 0 ? '+' : ''}${f.offsetMs} ms)` : `the clock could not be checked${f.offsetError ? ` (${f.offsetError})` : ''}`;
  if (f.holders.length > 0) {
    const who = f.holders.map((h) => `pid ${h.pid} (${h.cmdline.slice(0, 120)})`).join(', ');
    return {
      cause: 'shared-key',
      evidence: `key ${key} is also in the environment of ${who}, which botwarden did not start for ${f.account}: two users of one key make each other's nonces invalid. It is treated as a duplicate of ${f.account}; ${clockWords}.`,
    };
  }
  return { cause: 'unknown', evidence: `ruled out: ${clockWords}; no process on this machine holds key ${key}. Rotating to the next key, as before.` };
}
