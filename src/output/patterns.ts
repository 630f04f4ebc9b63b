/**
 * Line patterns: nonce / API-key errors per exchange , and
 * lines that betray a second instance somewhere . Codes are
 * matched in their error context, never as bare numbers, so ordinary log
 * lines (prices, order ids, timestamps) do not trip them.
 */
import type { NoncePresetName } from '../config/schema.js';

export const NONCE_PRESETS: Readonly<Record<NoncePresetName, readonly RegExp[]>> = {
  kraken: [/\bE?API:Invalid nonce\b/, /\bEGeneral:Temporary lockout\b/, /\bEAPI:Invalid key\b/, /\bEAPI:Invalid signature\b/, /\bEAPI:Rate limit exceeded\b/],
  binance: [/["']?code["']?\s*[:=]\s*-1021\b/, /Timestamp for this request is outside of the recvWindow/i],
  bitfinex: [/\bnonce: small\b/i, /\bNonce is too small\b/i],
  kucoin: [/["']?code["']?\s*[:=]\s*["']?400002\b/, /\bKC-API-TIMESTAMP\b.*\b(invalid|expired)\b/i],
  coinbase: [/\brequest timestamp expired\b/i],
  bybit: [/["']?ret_?code["']?\s*[:=]\s*10002\b/i, /\berror sign!? .*recv_window\b/i, /\binvalid request, please check your (server )?timestamp or recv_window param\b/i],
  okx: [/["']?code["']?\s*[:=]\s*["']?50102\b/, /\bTimestamp request expired\b/i],
  ccxt: [/\bInvalidNonce\b/],
};

export const SUSPECT_PATTERNS: readonly { name: string; re: RegExp }[] = [
  { name: 'telegram-conflict', re: /Conflict: terminated by other getUpdates request/i },
  { name: 'duplicate-order', re: /\bDuplicate order sent\b/i },
  { name: 'okx-duplicate-clordid', re: /\b51016\b.*Duplicated client ?order ?ID|\bDuplicated clOrdId\b/i },
];

export interface CompiledPattern {
  /** Preset name (`kraken`) or the custom regex source. */
  name: string;
  re: RegExp;
}

/** Preset names and/or regex strings, compiled once per account. Throws on an unknown preset or bad regex. */
export function compilePatterns(specs: readonly string[]): CompiledPattern[] {
  const out: CompiledPattern[] = [];
  for (const spec of specs) {
    const preset = (NONCE_PRESETS as Readonly<Record<string, readonly RegExp[] | undefined>>)[spec];
    if (preset) for (const re of preset) out.push({ name: spec, re });
    else out.push({ name: spec, re: new RegExp(spec) });
  }
  return out;
}

/** The first pattern that matches the line, if any. */
export function firstMatch(patterns: readonly CompiledPattern[], line: string): CompiledPattern | null {
  for (const p of patterns) if (p.re.test(line)) return p;
  return null;
}

/** Every known secret value replaced by ***. */
export function maskSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (s.length >= 4) out = out.split(s).join('***');
  return out;
}

/** A line fit for an event: secrets masked, then cut to 500 characters. */
export function sanitizeLine(line: string, secrets: readonly string[] = []): string {
  const out = maskSecrets(line, secrets);
  return out.length > 500 ? `${out.slice(0, 500)}…` : out;
}
