import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { compilePatterns, firstMatch, NONCE_PRESETS, sanitizeLine } from '../src/output/patterns.js';

/** What real trading code prints (scripts/nonce-fixture.mjs, from ccxt and the exchanges' SDKs). */
const FIXTURE = JSON.parse(readFileSync(new URL('./fixtures/nonce-lines.json', import.meta.url), 'utf8')) as { exchanges: Record<string, string[]>; ordinary: string[] };

const REAL: Record<string, string[]> = {
  kraken: [
    "{'error': ['EAPI:Invalid nonce']}",
    'kraken {"error":["EGeneral:Temporary lockout"]}',
    'Error: EAPI:Invalid key',
    'EAPI:Invalid signature',
    'ccxt.base.errors.RateLimitExceeded: kraken {"error":["EAPI:Rate limit exceeded"]}',
    'API:Invalid nonce',
  ],
  binance: ['{"code":-1021,"msg":"Timestamp for this request was 1000ms ahead of the server\'s time."}', 'Timestamp for this request is outside of the recvWindow.'],
  bitfinex: ['["error",10114,"nonce: small"]'],
  kucoin: ['{"code":"400002","msg":"KC-API-TIMESTAMP Invalid -- Time differs from server time by more than 5 seconds"}'],
  coinbase: ['{"message":"request timestamp expired"}'],
  bybit: ['{"retCode":10002,"retMsg":"invalid request, please check your server timestamp or recv_window param"}', '{"ret_code":10002,"ret_msg":"invalid request"}'],
  okx: ['{"code":"50102","msg":"Timestamp request expired","data":[]}'],
  ccxt: ['ccxt.base.errors.InvalidNonce: binance {"code":-1021}'],
};


describe('nonce presets', () => {
  it.each(Object.keys(REAL))('%s matches its real error lines', (preset) => {
    const p = compilePatterns([preset]);
    for (const line of REAL[preset]!) expect(firstMatch(p, line)?.name, line).toBe(preset);
  });

  it('no preset matches ordinary log lines', () => {
    const all = compilePatterns(Object.keys(NONCE_PRESETS));
    for (const line of FIXTURE.ordinary) expect(firstMatch(all, line), line).toBeNull();
  });

  it.each(Object.keys(FIXTURE.exchanges))('%s alone catches every nonce-error and key-rejection line real libraries print (fixture)', (preset) => {
    const p = compilePatterns([preset]);
    const missed = FIXTURE.exchanges[preset]!.filter((line) => firstMatch(p, line) === null);
    expect(missed).toEqual([]);
  });

  it('the fixture covers every exchange preset, with 30 ordinary lines', () => {
    expect(Object.keys(FIXTURE.exchanges).sort()).toEqual(Object.keys(NONCE_PRESETS).filter((k) => k !== 'ccxt').sort());
    expect(FIXTURE.ordinary.length).toBeGreaterThanOrEqual(30);
  });

  it.each(Object.keys(FIXTURE.exchanges))('%s: each line has the kind its ccxt error class says (InvalidNonce or a timestamp: nonce; AuthenticationError, PermissionDenied: key)', (preset) => {
    const p = compilePatterns([preset]);
    const wrong: string[] = [];
    for (const line of FIXTURE.exchanges[preset]!) {
      const cls = /\b(InvalidNonce|AuthenticationError|PermissionDenied|AccountSuspended)\b/.exec(line)?.[1];
      if (!cls) continue;
      // ccxt calls OKX's 50112 "Invalid OK-ACCESS-TIMESTAMP" an AuthenticationError; it is the clock.
      const want = cls === 'InvalidNonce' || /TIMESTAMP/.test(line) ? 'nonce' : 'key';
      if (firstMatch(p, line)?.kind !== want) wrong.push(`${want}: ${line}`);
    }
    expect(wrong).toEqual([]);
  });

  it("a bare HTTP 401/403 as ccxt prints a body-less answer is a key rejection, inside another message too (Coinbase Advanced's bad JWT)", () => {
    const lines = [
      'coinbase GET https://api.coinbase.com/api/v3/brokerage/accounts 401 Unauthorized Unauthorized',
      'fetchBalance failed: coinbase GET https://api.coinbase.com/api/v3/brokerage/accounts 401 Unauthorized Unauthorized',
      '{"level":50,"msg":"fetchBalance failed: coinbase GET https://api.coinbase.com/api/v3/brokerage/accounts 401 Unauthorized Unauthorized"}',
      'kraken POST https://api.kraken.com/0/private/Balance 403 Forbidden',
      'binance GET https://api.binance.com/api/v3/account 401 Unauthorized {"code":-2015}',
    ];
    const p = compilePatterns(['coinbase', 'kraken', 'binance']);
    for (const line of lines) expect(firstMatch(p, line)?.kind, line).toBe('key');
    // A 401 of another exchange, or a 500, is not theirs.
    expect(firstMatch(compilePatterns(['coinbase']), 'kraken GET https://x 401 Unauthorized')).toBeNull();
    expect(firstMatch(p, 'coinbase GET https://api.coinbase.com/x 500 Internal Server Error')).toBeNull();
  });

  it('kinds: Binance -1021 is nonce (the clock), -2015 key; Kraken lockout ratelimit; a custom regex is nonce', () => {
    const p = compilePatterns(['binance', 'kraken', 'my bad nonce']);
    expect(firstMatch(p, 'binance {"code":-1021,"msg":"Timestamp for this request is outside of the recvWindow."}')?.kind).toBe('nonce');
    expect(firstMatch(p, 'binance {"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}')?.kind).toBe('key');
    expect(firstMatch(p, 'kraken {"error":["EGeneral:Temporary lockout"]}')?.kind).toBe('ratelimit');
    expect(firstMatch(p, 'oops: my bad nonce')?.kind).toBe('nonce');
  });

  it('custom regex strings work beside presets', () => {
    const p = compilePatterns(['kraken', 'my-exchange: bad nonce \\d+']);
    expect(firstMatch(p, 'my-exchange: bad nonce 17')?.name).toBe('my-exchange: bad nonce \\d+');
  });

  it('event lines are cut to 500 characters with secrets masked', () => {
    const line = `EAPI:Invalid nonce key=SECRETVALUE ${'x'.repeat(1000)}`;
    const out = sanitizeLine(line, ['SECRETVALUE']);
    expect(out).not.toContain('SECRETVALUE');
    expect(out).toContain('key=***');
    expect(out.length).toBeLessThanOrEqual(501);
  });
});
