/**
 * Line patterns: nonce / API-key errors per exchange, and
 * lines that betray a second instance somewhere. Codes are
 * matched in their error context, never as bare numbers, so ordinary log
 * lines (prices, order ids, timestamps) do not trip them.
 */
import type { NoncePresetName } from '../config/schema.js';

/** A JSON key, its quotes possibly escaped once or twice (pino, structlog): code, \"code\", \\\"code\\\". */
const code = (key: string, values: string) => new RegExp(`\\b${key}[\\\\"']*\\s*[:=]\\s*[\\\\"']*(?:${values})\\b`, 'i');

/** What a matching line says (SPEC 17): a bad nonce or timestamp, a rejected key, a rate limit. */
export const ERROR_KINDS = ['nonce', 'key', 'ratelimit'] as const;
export type ErrorKind = (typeof ERROR_KINDS)[number];

export interface KindedPattern {
  re: RegExp;
  kind: ErrorKind;
}

const nonce = (re: RegExp): KindedPattern => ({ re, kind: 'nonce' });
const key = (re: RegExp): KindedPattern => ({ re, kind: 'key' });
const ratelimit = (re: RegExp): KindedPattern => ({ re, kind: 'ratelimit' });

/**
 * ccxt names the error class, then the exchange id: `InvalidNonce: kraken {...}` (Node),
 * `ccxt.base.errors.AuthenticationError: okx ...` (Python), `due to InvalidNonce. Message: bybit`
 * (freqtrade), `"type":"PermissionDenied","message":"kucoin` (pino). Rate-limit classes are not
 * here: only Kraken counts them per key, and its preset names them.
 */
const ccxtClass = (id: string): KindedPattern[] => [
  nonce(new RegExp(`\\bInvalidNonce\\b.{0,40}?\\b(?:${id})\\b`)),
  key(new RegExp(`\\b(?:AuthenticationError|PermissionDenied|AccountSuspended)\\b.{0,40}?\\b(?:${id})\\b`)),
];

/**
 * An HTTP 401/403 with only its reason phrase, as ccxt prints an answer with no JSON body:
 * `coinbase GET https://... 401 Unauthorized Unauthorized` (Coinbase Advanced answers a bad JWT
 * so), also inside another message (`fetchBalance failed: coinbase GET ... 401 ...`). A key rejection.
 */
const bareHttp = (id: string): KindedPattern => key(new RegExp(`\\b(?:${id})\\s+(?:GET|POST|PUT|DELETE|PATCH)\\s+\\S+\\s+(?:401\\s+Unauthorized|403\\s+Forbidden)\\b`));

const ccxtFor = (id: string): KindedPattern[] => [...ccxtClass(id), bareHttp(id)];

/**
 * Each preset matches its exchange's nonce errors and key rejections (invalid or locked key, bad
 * signature, wrong passphrase, IP not allowed) as ccxt in Node and Python, freqtrade, hummingbot
 * and the exchanges' own SDKs print them, in plain text and in JSON logs with escaped quotes, each
 * with its kind. Codes only ever count next to their key (`code`, `retCode`, `ErrCode`), never as
 * bare numbers. Checked against test/fixtures/nonce-lines.json (scripts/nonce-fixture.mjs regenerates it).
 */
export const NONCE_PRESETS: Readonly<Record<NoncePresetName, readonly KindedPattern[]>> = {
  kraken: [
    nonce(/\bE?API:Invalid nonce\b/),
    nonce(/\bInvalid nonce error from \/0\/private\//),
    key(/\bEAPI:Invalid key\b/),
    key(/\bEAPI:Invalid signature\b/),
    key(/\bEGeneral:Permission denied\b/),
    // Kraken counts these per API key: a lockout follows.
    ratelimit(/\bEGeneral:Temporary lockout\b/),
    ratelimit(/\bEAPI:Rate limit exceeded\b/),
    ...ccxtFor('kraken'),
  ],
  binance: [
    // -1021: timestamp outside recvWindow (the clock); -1022 signature, -2008/-2014/-2015 the key.
    nonce(code('code', '-1021')),
    key(code('code', '-(?:1022|2008|2014|2015)')),
    nonce(/\bAPIError\(code=-1021\)/),
    key(/\bAPIError\(code=-(?:1022|2008|2014|2015)\)/),
    nonce(/\bTimestamp for this request (?:is outside of the recvWindow|was \d+ms ahead of the server's time)/i),
    key(/\bInvalid API-key, IP, or permissions for action\b/i),
    key(/\bAPI-key format invalid\b/i),
    key(/\bSignature for this request is not valid\b/i),
    ...ccxtFor('binance(?:usdm|coinm)?'),
  ],
  bitfinex: [
    nonce(/\bnonce: small\b/i),
    key(/\bapikey: (?:digest )?invalid\b/i),
    nonce(/\[\s*[\\"']*error[\\"']*\s*,\s*10114\b/),
    key(/\[\s*[\\"']*error[\\"']*\s*,\s*10100\b/),
    ...ccxtFor('bitfinex2?'),
  ],
  kucoin: [
    // 400002: KC-API-TIMESTAMP; 400003-400006: key, passphrase, signature, IP.
    nonce(code('code', '400002')),
    key(code('code', '40000[3-6]')),
    nonce(/\bKucoinAPIException:? 400002\b/),
    key(/\bKucoinAPIException:? 40000[3-6]\b/),
    nonce(/\bInvalid KC-API-TIMESTAMP\b/),
    key(/\bInvalid KC-API-(?:SIGN|PASSPHRASE|KEY)\b/),
    key(/\bKC-API-KEY not exists\b/),
    nonce(/\bKC-API-TIMESTAMP\b.*\b(?:invalid|expired)\b/i),
    key(/\bInvalid request ip, the current clientIp is\b/i),
    ...ccxtFor('kucoin(?:futures)?'),
  ],
  coinbase: [
    nonce(/\brequest timestamp expired\b/i),
    key(/\binvalid signature\b/i),
    key(/\bInvalid API Key\b/i),
    key(/\bInvalid Passphrase\b/i),
    key(code('error', 'unauthorized|PERMISSION_DENIED')),
    ...ccxtFor('coinbase(?:exchange|advanced|international)?'),
  ],
  bybit: [
    // 10002: timestamp / recv_window; 10003-10005, 10010: key, signature, permission, IP.
    nonce(code('ret_?code', '10002')),
    key(code('ret_?code', '10003|10004|10005|10010')),
    nonce(/\(ErrCode: 10002\)/),
    key(/\(ErrCode: (?:10003|10004|10005|10010)\)/),
    nonce(/\binvalid request, please check your (?:server )?timestamp or recv_window param\b/i),
    key(/\bAPI key is invalid\b/i),
    key(/\berror sign! origin_string\b/),
    key(/\bUnmatched IP, please check your API key's bound IP addresses\b/i),
    key(/\bPermission denied, please check your API key permissions\b/i),
    ...ccxtFor('bybit'),
  ],
  okx: [
    // 50102/50112: timestamp; 50105, 50110, 50111, 50113: passphrase, IP, key, signature.
    nonce(code('code', '50102|50112')),
    key(code('code', '50105|50110|50111|50113')),
    nonce(/\(code=(?:50102|50112)\)/),
    key(/\(code=(?:50105|50110|50111|50113)\)/),
    nonce(/\bTimestamp request expired\b/i),
    nonce(/\bInvalid OK-ACCESS-TIMESTAMP\b/),
    key(/\bInvalid OK-ACCESS-(?:KEY|PASSPHRASE)\b/),
    key(/\bInvalid Sign\b/),
    key(/\bis not included in your API key's IP whitelist\b/i),
    ...ccxtFor('okx'),
  ],
  ccxt: [nonce(/\bInvalidNonce\b/), key(/\b(?:AuthenticationError|PermissionDenied|AccountSuspended)\b/)],
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
  /** A regex from the config is `nonce` (SPEC 17). */
  kind: ErrorKind;
}

/** Preset names and/or regex strings, compiled once per account. Throws on an unknown preset or bad regex. */
export function compilePatterns(specs: readonly string[]): CompiledPattern[] {
  const out: CompiledPattern[] = [];
  for (const spec of specs) {
    const preset = (NONCE_PRESETS as Readonly<Record<string, readonly KindedPattern[] | undefined>>)[spec];
    if (preset) for (const p of preset) out.push({ name: spec, re: p.re, kind: p.kind });
    else out.push({ name: spec, re: new RegExp(spec), kind: 'nonce' });
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
