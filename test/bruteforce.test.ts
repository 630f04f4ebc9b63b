/**
 * SPEC 18 brute force: ten wrong tokens from one address within a minute, and that address gets
 * 429 TOO_MANY_REQUESTS with Retry-After until its window frees (one log line per window), while
 * other addresses are served as usual. Addresses come from X-Forwarded-For with daemon.trustProxy,
 * and from the socket (a second loopback address) without it. Time is the daemon's ManualClock.
 */
import { request } from 'node:http';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { FailureLimiter } from '../src/auth/limiter.js';
import { fixture, makeConfig, startTestDaemon, sweepLeftovers, type TestDaemon } from './helper.js';

const daemons: TestDaemon[] = [];
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.close();
  expect(sweepLeftovers()).toEqual([]);
});

async function daemon(trustProxy: boolean) {
  const clock = new ManualClock();
  const lines: { msg: string; remote?: string; retryAfterS?: number }[] = [];
  const sink = new Writable({ write: (c: Buffer, _e, cb) => (lines.push(JSON.parse(c.toString()) as (typeof lines)[number]), cb()) });
  const d = await startTestDaemon(makeConfig({ daemon: { trustProxy }, accounts: { rl9: { command: fixture('bot.js') } } }), { clock, logger: pino({ level: 'warn' }, sink) });
  daemons.push(d);
  return { d, clock, lines: () => lines.filter((l) => l.msg.includes('too many failed authentications')) };
}

/** A request from a chosen source address (127.0.0.0/8 is all loopback) with chosen headers. */
function raw(d: TestDaemon, path: string, o: { token?: string; from?: string; xff?: string } = {}): Promise<{ status: number; headers: Record<string, unknown>; body: any }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (o.token !== undefined) headers.authorization = `Bearer ${o.token}`;
    if (o.xff !== undefined) headers['x-forwarded-for'] = o.xff;
    const r = request({ host: '127.0.0.1', port: d.address.port, path, headers, agent: false, ...(o.from ? { localAddress: o.from } : {}) }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? JSON.parse(text) : null }));
    });
    r.on('error', reject);
    r.end();
  });
}

const WRONG = 'wrong-token-00000000000000';

describe('brute force', () => {
  it('behind a proxy (trustProxy): the 11th try from one address is 429 with Retry-After until the window frees; another address is served; one log line', async () => {
    const { d, clock, lines } = await daemon(true);
    for (let i = 0; i < 10; i++) {
      clock.advance(1000);
      expect((await raw(d, '/bots', { token: WRONG, xff: '203.0.113.7' })).status).toBe(401);
    }
    // Blocked now, even with the right token; the client's own X-Forwarded-For entry (left of the proxy's) changes nothing.
    const blocked = await raw(d, '/bots', { token: d.token, xff: '198.51.100.1, 203.0.113.7' });
    expect(blocked.status).toBe(429);
    expect(blocked.body).toMatchObject({ statusCode: 429, code: 'TOO_MANY_REQUESTS', retryAfterSeconds: 51 });
    expect(blocked.headers['retry-after']).toBe('51'); // the first of the ten was 9 s ago: 60 - 9
    expect((await raw(d, '/bots', { token: WRONG, xff: '203.0.113.7' })).status).toBe(429);
    // Another address: served as usual, refused as usual.
    expect((await raw(d, '/bots', { token: d.token, xff: '203.0.113.8' })).status).toBe(200);
    expect((await raw(d, '/bots', { token: WRONG, xff: '203.0.113.8' })).status).toBe(401);
    // /health needs no token: still answered.
    expect((await raw(d, '/health', { xff: '203.0.113.7' })).status).toBe(200);
    expect(lines()).toHaveLength(1);
    expect(lines()[0]).toMatchObject({ remote: '203.0.113.7', retryAfterS: 51 });
    // Audited: the ten 401s and the first 429 of the window (not every one after it).
    const audit = d.events.history(0, 1000, { types: ['audit'] }).filter((e) => e.remote === '203.0.113.7');
    expect(audit.map((e) => e.status)).toEqual([...Array<number>(10).fill(401), 429]);
    // The window frees when the oldest failure is a minute old.
    clock.advance(50_000);
    expect((await raw(d, '/bots', { token: d.token, xff: '203.0.113.7' })).status).toBe(429);
    clock.advance(1_000);
    expect((await raw(d, '/bots', { token: d.token, xff: '203.0.113.7' })).status).toBe(200);
  });

  it('without trustProxy X-Forwarded-For is ignored: the socket address counts (a second loopback address is served)', async () => {
    const { d } = await daemon(false);
    for (let i = 0; i < 10; i++) expect((await raw(d, '/bots', { token: WRONG, xff: `203.0.113.${i}`, from: '127.0.0.3' })).status).toBe(401);
    expect((await raw(d, '/bots', { token: d.token, xff: '203.0.113.99', from: '127.0.0.3' })).status).toBe(429);
    expect((await raw(d, '/bots', { token: d.token, from: '127.0.0.2' })).status).toBe(200);
    expect(d.events.history(0, 1000, { types: ['audit'] }).at(-1)).toMatchObject({ remote: '127.0.0.3', status: 429 });
  });

  it('no token at all is no guess: probes without one are never blocked', async () => {
    const { d } = await daemon(false);
    for (let i = 0; i < 15; i++) expect((await raw(d, '/metrics', { from: '127.0.0.4' })).status).toBe(401);
    expect((await raw(d, '/bots', { token: d.token, from: '127.0.0.4' })).status).toBe(200);
  });
});

describe('the limiter is bounded', () => {
  it('tracks at most maxAddresses, forgetting the one that failed longest ago, and drops addresses whose failures left the window', () => {
    let t = 0;
    const l = new FailureLimiter({ now: () => t, maxAddresses: 100 });
    for (let i = 0; i < 1000; i++) l.fail(`10.0.${i >> 8}.${i & 255}`);
    expect(l.size).toBe(100);
    t = 61_000;
    l.fail('192.0.2.1');
    expect(l.size).toBe(1);
  });
});

describe('behind a proxy the guards still hold', () => {
  it('the Host guard reads Host, never X-Forwarded-Host; a token in the query of a REST route is no token', async () => {
    const { d } = await daemon(true);
    const get = (headers: Record<string, string>, path = '/bots') =>
      new Promise<number>((resolve, reject) => {
        const r = request({ host: '127.0.0.1', port: d.address.port, path, headers, agent: false }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        r.on('error', reject);
        r.end();
      });
    const auth = { authorization: `Bearer ${d.token}` };
    expect(await get({ ...auth, host: 'evil.example', 'x-forwarded-host': 'localhost', 'x-forwarded-for': '203.0.113.5' })).toBe(421);
    expect(await get({ ...auth, host: 'localhost', 'x-forwarded-for': '203.0.113.5' })).toBe(200);
    expect(await get({ host: 'localhost' }, `/bots?token=${d.token}`)).toBe(401);
  });
});
