/**
 * Line patterns: nonce / API-key errors per exchange, and
 * lines that betray a second instance somewhere. Codes are
 * matched in their error context, never as bare numbers, so ordinary log
 * lines (prices, order ids, timestamps) do not trip them.
 */
import type { NoncePresetName } from '../config/schema.js';

/** A JSON key, its quotes possibly escaped once or twice (pino, structlog): code, \"code\", \\\"code\\\". */
const code = (key: string, values: string) => new RegExp(`\\b${key}[\\\\"']*\\s*[:=]\\s*[\\\\"']*(?:${values})\\b`, 'i');

/**
 * ccxt names the error class, then the exchange id: `InvalidNonce: kraken {...}` (Node),
 * `ccxt.base.errors.AuthenticationError: okx ...` (Python), `due to InvalidNonce. Message: bybit`
 * (freqtrade), `"type":"PermissionDenied","message":"kucoin` (pino). Rate-limit classes are not
 * here: only Kraken counts them per key, and its preset names them.
 */
const ccxtClass = (id: string) => new RegExp(`\\b(?:InvalidNonce|AuthenticationError|PermissionDenied|AccountSuspended)\\b.{0,40}?\\b(?:${id})\\b`);

/**
 * Each preset matches its exchange's nonce errors and key rejections (invalid or locked key, bad
 * signature, wrong passphrase, IP not allowed) as ccxt in Node and Python, freqtrade, hummingbot
 * and the exchanges' own SDKs print them, in plain text and in JSON logs with escaped quotes.
 * Codes only ever count next to their key (`code`, `retCode`, `ErrCode`), never as bare numbers.
 * Checked against test/fixtures/nonce-lines.json (scripts/nonce-fixture.mjs regenerates it).
 */
export const NONCE_PRESETS: Readonly<Record<NoncePresetName, readonly RegExp[]>> = {
  kraken: [
    /\bE?API:Invalid nonce\b/,
    /\bInvalid nonce error from \/0\/private\//,
    /\bEAPI:Invalid key\b/,
    /\bEAPI:Invalid signature\b/,
    /\bEGeneral:Permission denied\b/,
    // Kraken counts these per API key: a lockout follows.
    /\bEGeneral:Temporary lockout\b/,
    /\bEAPI:Rate limit exceeded\b/,
    ccxtClass('kraken'),
  ],
  binance: [
    code('code', '-(?:1021|1022|2008|2014|2015)'),
    /\bAPIError\(code=-(?:1021|1022|2008|2014|2015)\)/,
    /\bTimestamp for this request (?:is outside of the recvWindow|was \d+ms ahead of the server's time)/i,
    /\bInvalid API-key, IP, or permissions for action\b/i,
    /\bAPI-key format invalid\b/i,
    /\bSignature for this request is not valid\b/i,
    ccxtClass('binance(?:usdm|coinm)?'),
  ],
  bitfinex: [/\bnonce: small\b/i, /\bapikey: (?:digest )?invalid\b/i, /\[\s*[\\"']*error[\\"']*\s*,\s*(?:10114|10100)\b/, ccxtClass('bitfinex2?')],
  kucoin: [
    code('code', '40000[2-6]'),
    /\bKucoinAPIException:? 40000[2-6]\b/,
    /\bInvalid KC-API-(?:TIMESTAMP|SIGN|PASSPHRASE|KEY)\b/,
    /\bKC-API-KEY not exists\b/,
    /\bKC-API-TIMESTAMP\b.*\b(?:invalid|expired)\b/i,
    /\bInvalid request ip, the current clientIp is\b/i,
    ccxtClass('kucoin(?:futures)?'),
  ],
  coinbase: [
    /\brequest timestamp expired\b/i,
    /\binvalid signature\b/i,
    /\bInvalid API Key\b/i,
    /\bInvalid Passphrase\b/i,
    code('error', 'unauthorized|PERMISSION_DENIED'),
    ccxtClass('coinbase(?:exchange|advanced|international)?'),
  ],
  bybit: [
    code('ret_?code', '10002|10003|10004|10005|10010'),
    /\(ErrCode: (?:10002|10003|10004|10005|10010)\)/,
    /\binvalid request, please check your (?:server )?timestamp or recv_window param\b/i,
    /\bAPI key is invalid\b/i,
    /\berror sign! origin_string\b/,
    /\bUnmatched IP, please check your API key's bound IP addresses\b/i,
    /\bPermission denied, please check your API key permissions\b/i,
    ccxtClass('bybit'),
  ],
  okx: [
    code('code', '50102|50105|50110|50111|50112|50113'),
    /\(code=(?:50102|50105|50110|50111|50112|50113)\)/,
    /\bTimestamp request expired\b/i,
    /\bInvalid OK-ACCESS-(?:KEY|TIMESTAMP|PASSPHRASE)\b/,
    /\bInvalid Sign\b/,
    /\bis not included in your API key's IP whitelist\b/i,
    ccxtClass('okx'),
  ],
  ccxt: [/\b(?:InvalidNonce|AuthenticationError|PermissionDenied|AccountSuspended)\b/],
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

/**
 * Secrets shorter than this are never masked: a 3-character value would turn every "abc" in every
 * line into ***. A real secret (a key, a token, a password, a webhook path) is longer.
 */
export const MIN_SECRET_LENGTH = 6;

/** Every known secret value replaced by ***. */
export function maskSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (s.length >= MIN_SECRET_LENGTH) out = out.split(s).join('***');
  return out;
}

/** A line fit for an event: secrets masked, then cut to 500 characters. */
export function sanitizeLine(line: string, secrets: readonly string[] = []): string {
  const out = maskSecrets(line, secrets);
  return out.length > 500 ? `${out.slice(0, 500)}…` : out;
}

/**
 * The daemon's secrets (key values, the API token, webhook URLs and chat ids, database passwords,
 * every value of the .env file), masked in whatever text leaves the daemon (SPEC 15). One regex
 * over every value, longest first, each also in its JSON-escaped form (a value with a quote or a
 * backslash inside a JSON body). Values shorter than MIN_SECRET_LENGTH are not masked.
 */
export class SecretMask {
  private list: string[] = [];
  private re: RegExp | null = null;

  /** Replaces the set of secrets (at start and on every reload). */
  set(values: Iterable<string>): void {
    const all = new Set<string>();
    for (const v of values) {
      if (v.length < MIN_SECRET_LENGTH) continue;
      all.add(v);
      const escaped = JSON.stringify(v).slice(1, -1);
      if (escaped !== v) all.add(escaped);
    }
    this.list = [...all].sort((a, b) => b.length - a.length);
    this.re = this.list.length === 0 ? null : new RegExp(this.list.map(escapeRegExp).join('|'), 'g');
  }

  /** The secret values (for the line sanitizer of events). */
  values(): readonly string[] {
    return this.list;
  }

  /** The text with every secret replaced by ***. */
  mask(text: string): string {
    if (this.re === null) return text;
    // includes() is V8's fast substring search: ~10x quicker than the alternation over a response
    // of 1,000 bots that holds no secret (the common case).
    for (const v of this.list) if (text.includes(v)) return text.replace(this.re, '***');
    return text;
  }

  /** A mask function bound to this instance (its secrets as they are when it is called). */
  readonly fn = (text: string): string => this.mask(text);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
