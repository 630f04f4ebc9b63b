import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { createLogger } from '../src/logger.js';
import { isAlive, readEnviron } from '../src/host/procfs.js';
import { fixture, makeConfig, startTestDaemon, sweepLeftovers, tmpDir, waitFor, type TestDaemon } from './helper.js';

const daemons: TestDaemon[] = [];
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.close();
  expect(sweepLeftovers()).toEqual([]);
});

const SECRETS = {
  KRAKEN_API_KEY: 'pubkey-AAAA-1111-alpha',
  KRAKEN_API_SECRET: 'c2VjcmV0LW9uZS1zdXBlci1zZWNyZXQ=',
  KRAKEN_API_KEY_2: 'pubkey-BBBB-2222-bravo',
  KRAKEN_API_SECRET_2: 'c2VjcmV0LXR3by1zdXBlci1zZWNyZXQ=',
  KRAKEN_API_KEY_3: 'pubkey-CCCC-3333-charlie',
  KRAKEN_API_SECRET_3: 'c2VjcmV0LXRocmVlLXN1cGVyLXNlY3JldA==',
};
const keys = {
  k1: { keyEnv: 'KRAKEN_API_KEY', secretEnv: 'KRAKEN_API_SECRET' },
  k2: { keyEnv: 'KRAKEN_API_KEY_2', secretEnv: 'KRAKEN_API_SECRET_2' },
  k3: { keyEnv: 'KRAKEN_API_KEY_3', secretEnv: 'KRAKEN_API_SECRET_3' },
  gone: { keyEnv: 'NOT_SET_KEY', secretEnv: 'NOT_SET_SECRET' },
};
const pool = (p: string[]) => ({ pool: p, envKey: 'KRAKEN_API_KEY', envSecret: 'KRAKEN_API_SECRET' });
const nonce = { patterns: ['kraken'], rotateAfter: 3, windowMs: 60_000, cooldownMs: 900_000 };

async function daemon(cfg: Parameters<typeof makeConfig>[0], opts: Parameters<typeof startTestDaemon>[1] = {}) {
  const d = await startTestDaemon(makeConfig(cfg), { env: { ...process.env, ...SECRETS, BOTWARDEN_TOKEN: undefined }, ...opts });
  daemons.push(d);
  return d;
}

async function state(d: TestDaemon, account: string, want: string) {
  return waitFor(async () => {
    const b = (await d.req('GET', `/bots/${account}`)).body;
    return b.state === want ? b : null;
  }, { what: `${account} ${want}` });
}

describe('exclusive key leases', () => {
  it('leases a pair to one bot at a time across accounts; the second gets 409 NO_FREE_KEY and nothing is spawned', async () => {
    const d = await daemon({ keys, accounts: { a: { command: fixture('bot.js'), keys: pool(['k1']) }, b: { command: fixture('bot.js'), keys: pool(['k1']) } } });
    const a = await d.req('POST', '/bots/a/start');
    expect(a.status).toBe(201);
    expect(a.body.keyId).toBe('k1');
    const env = readEnviron(a.body.pid)!;
    expect(env.get('KRAKEN_API_KEY')).toBe(SECRETS.KRAKEN_API_KEY);
    expect(env.get('KRAKEN_API_SECRET')).toBe(SECRETS.KRAKEN_API_SECRET);
    expect(env.has('KRAKEN_API_KEY_2')).toBe(false); // other pairs never reach a bot
    const b = await d.req('POST', '/bots/b/start');
    expect(b.status).toBe(409);
    expect(b.body.code).toBe('NO_FREE_KEY');
    expect((await d.req('GET', '/bots/b')).body).toMatchObject({ state: 'stopped', lock: null, pid: null });
    const list = (await d.req('GET', '/keys')).body.keys;
    expect(list).toEqual([
      { id: 'gone', state: 'missing', account: null, cooldownUntil: null, nonceErrors: 0 },
      { id: 'k1', state: 'leased', account: 'a', cooldownUntil: null, nonceErrors: 0 },
      { id: 'k2', state: 'free', account: null, cooldownUntil: null, nonceErrors: 0 },
      { id: 'k3', state: 'free', account: null, cooldownUntil: null, nonceErrors: 0 },
    ]);
    await d.req('POST', '/bots/a/stop');
    expect((await d.req('POST', '/bots/b/start')).body.keyId).toBe('k1');
  });

  it('skips missing keys and takes the pool in order', async () => {
    const d = await daemon({ keys, accounts: { a: { command: fixture('bot.js'), keys: pool(['gone', 'k2', 'k3']) } } });
    const a = await d.req('POST', '/bots/a/start');
    expect(a.body.keyId).toBe('k2');
    expect(readEnviron(a.body.pid)!.get('KRAKEN_API_KEY')).toBe(SECRETS.KRAKEN_API_KEY_2);
    const h = (await d.req('GET', '/health')).body;
    expect(h.checks.find((c: { name: string }) => c.name === 'keys')).toMatchObject({ status: 'degraded', detail: expect.stringContaining('missing: gone') });
  });
});

describe('secrets from the .env file', () => {
  it('reads key secrets from --env-file (never into process.env); the real environment wins', async () => {
    const dir = tmpDir();
    const envFile = path.join(dir, 'secrets.env');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(envFile, `KRAKEN_API_KEY=from-file-key-1\nKRAKEN_API_SECRET=from-file-secret-1\nKRAKEN_API_KEY_2=from-file-key-2\nKRAKEN_API_SECRET_2=from-file-secret-2\n`, { mode: 0o600 });
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KRAKEN_') && !k.startsWith('BOTWARDEN_') || k === 'BOTWARDEN_SCOPE'));
    const d = await startTestDaemon(makeConfig({ keys, accounts: { a: { command: fixture('bot.js'), keys: pool(['k1']) }, b: { command: fixture('bot.js'), keys: pool(['k2']) } } }), {
      env: { ...clean, KRAKEN_API_KEY_2: 'from-real-env-key-2' },
      flags: { dataDir: dir, listen: '127.0.0.1:0', envFile },
    });
    daemons.push(d);
    const list = (await d.req('GET', '/keys')).body.keys;
    expect(list.filter((k: { state: string }) => k.state === 'free').map((k: { id: string }) => k.id)).toEqual(['k1', 'k2']);
    const a = (await d.req('POST', '/bots/a/start')).body;
    const b = (await d.req('POST', '/bots/b/start')).body;
    expect(readEnviron(a.pid)!.get('KRAKEN_API_SECRET')).toBe('from-file-secret-1');
    expect(readEnviron(b.pid)!.get('KRAKEN_API_KEY')).toBe('from-real-env-key-2');
    expect(process.env.KRAKEN_API_SECRET).toBeUndefined();
  });
});

describe('nonce errors and the circuit breaker', () => {
  it('3 nonce errors rotate k1 -> k2: old process gone, new one on pair 2, k1 cooling, then free after cooldownMs', async () => {
    const clock = new ManualClock(Date.now());
    const d = await daemon(
      { keys, accounts: { a: { command: fixture('nonce-bot.js'), env: { NONCE_FAIL_KEY: SECRETS.KRAKEN_API_KEY }, keys: pool(['k1', 'k2']), nonceErrors: nonce, stop: { graceMs: 2000 } } } },
      { clock },
    );
    const first = (await d.req('POST', '/bots/a/start')).body;
    expect(first.keyId).toBe('k1');
    const rotated = await waitFor(() => d.events.history(0, 1000, { types: ['key.rotated'] })[0], { what: 'rotation' });
    expect(rotated).toMatchObject({ account: 'a', from: 'k1', to: 'k2' });
    const second = await waitFor(async () => {
      const b = (await d.req('GET', '/bots/a')).body;
      return b.pid && b.pid !== first.pid ? b : null;
    });
    expect(isAlive(first.pid, null)).toBe(false);
    expect(second).toMatchObject({ keyId: 'k2', restarts: 1, nonceErrors: { total: 3 } });
    expect(readEnviron(second.pid)!.get('KRAKEN_API_KEY')).toBe(SECRETS.KRAKEN_API_KEY_2);
    const errs = d.events.history(0, 1000, { types: ['nonce.error'] });
    expect(errs.map((e) => [e.keyId, e.inWindow, e.pattern])).toEqual([['k1', 1, 'kraken'], ['k1', 2, 'kraken'], ['k1', 3, 'kraken']]);
    expect(errs[0]!.line).toContain('EAPI:Invalid nonce');
    expect(d.events.history(0, 1000, { types: ['bot.stopping'] })[0]).toMatchObject({ reason: 'rotation', keyId: 'k1' });
    let k1 = (await d.req('GET', '/keys')).body.keys.find((k: { id: string }) => k.id === 'k1');
    expect(k1).toMatchObject({ state: 'cooling', nonceErrors: 3, cooldownUntil: new Date(clock.now() + 900_000).toISOString() });
    clock.advance(900_000);
    k1 = (await d.req('GET', '/keys')).body.keys.find((k: { id: string }) => k.id === 'k1');
    expect(k1.state).toBe('free');
    // The nonce errors were 15 minutes ago: the health check has forgotten them.
    expect((await d.req('GET', '/health')).body.checks.find((c: { name: string }) => c.name === 'nonce-errors').status).toBe('ok');
  });

  it('health shows nonce errors of the last 5 minutes', async () => {
    const d = await daemon({ keys, accounts: { a: { command: fixture('nonce-bot.js'), env: { NONCE_ERRORS: '1' }, keys: pool(['k1']), nonceErrors: nonce } } });
    await d.req('POST', '/bots/a/start');
    await waitFor(() => d.events.history(0, 100, { types: ['nonce.error'] }).length === 1);
    const h = (await d.req('GET', '/health')).body;
    expect(h.status).toBe('degraded');
    expect(h.checks.find((c: { name: string }) => c.name === 'nonce-errors')).toMatchObject({ status: 'degraded', detail: 'last 5 minutes: a 1' });
  });

  it('no usable key left: bot.fatal keys-exhausted, lock released, health degraded', async () => {
    const d = await daemon({ keys, accounts: { a: { command: fixture('nonce-bot.js'), keys: pool(['k1', 'k2']), nonceErrors: nonce, stop: { graceMs: 2000 } } } });
    await d.req('POST', '/bots/a/start');
    const fatal = await state(d, 'a', 'fatal');
    expect(fatal).toMatchObject({ lock: null, pid: null, keyId: null });
    expect(d.events.history(0, 1000, { types: ['key.rotated'] }).map((e) => [e.from, e.to])).toEqual([['k1', 'k2'], ['k2', null]]);
    expect(d.events.history(0, 1000, { types: ['bot.fatal'] })[0]).toMatchObject({ reason: 'keys-exhausted' });
    expect((await d.req('GET', '/health')).body.status).toBe('degraded');
    const again = await d.req('POST', '/bots/a/start');
    expect(again.status).toBe(409);
    expect(again.body.code).toBe('NO_FREE_KEY');
  });

  it('a cooldown survives a daemon restart', async () => {
    const dataDir = tmpDir();
    const cfg = { keys, accounts: { a: { command: fixture('nonce-bot.js'), env: { NONCE_FAIL_KEY: SECRETS.KRAKEN_API_KEY }, keys: pool(['k1', 'k2']), nonceErrors: nonce, stop: { graceMs: 2000 } } } };
    const d1 = await daemon(cfg, { dataDir });
    await d1.req('POST', '/bots/a/start');
    await waitFor(() => d1.events.history(0, 1000, { types: ['key.rotated'] })[0]);
    const before = (await d1.req('GET', '/keys')).body.keys.find((k: { id: string }) => k.id === 'k1');
    await d1.close();
    const d2 = await daemon(cfg, { dataDir });
    const after = (await d2.req('GET', '/keys')).body.keys.find((k: { id: string }) => k.id === 'k1');
    expect(after).toMatchObject({ state: 'cooling', cooldownUntil: before.cooldownUntil });
    expect((await d2.req('POST', '/bots/a/start')).body.keyId).toBe('k2');
  });
});

describe('secrets never leak', () => {
  it('not in any response, event, daemon log line, or data-dir file but the bot’s own output', async () => {
    let logs = '';
    const sink = new Writable({ write: (c, _e, cb) => ((logs += c.toString()), cb()) });
    const dataDir = tmpDir();
    const d = await daemon(
      {
        keys,
        accounts: {
          a: { command: fixture('nonce-bot.js'), env: { NONCE_FAIL_KEY: SECRETS.KRAKEN_API_KEY }, keys: pool(['k1', 'k2']), nonceErrors: nonce, stop: { graceMs: 2000 } },
          tg: { command: fixture('bot.js'), env: { BOT_PRINT: `Conflict: terminated by other getUpdates request key=${SECRETS.KRAKEN_API_KEY_3}` } },
        },
      },
      { dataDir, logger: createLogger('trace', sink) },
    );
    const ws = new WebSocket(`${d.url.replace('http', 'ws')}/events?since=0`, { headers: { authorization: `Bearer ${d.token}` } });
    let streamed = '';
    ws.on('message', (m: Buffer) => (streamed += m.toString()));
    await new Promise((r) => ws.once('open', r));
    const bodies: string[] = [];
    const grab = async (m: string, u: string, body?: unknown) => bodies.push((await d.req(m, u, { body })).text);
    await grab('POST', '/bots/a/start');
    await grab('POST', '/bots/tg/start');
    await waitFor(() => d.events.history(0, 1000, { types: ['key.rotated'] }).length > 0 && d.events.history(0, 1000, { types: ['duplicate.suspected'] }).length > 0);
    for (const u of ['/bots', '/bots/a', '/bots/tg', '/keys', '/health', '/events/history?since=0&limit=10000', '/openapi.json', '/bots/a/logs?lines=100', '/bots/tg/logs?lines=100']) await grab('GET', u);
    await grab('POST', '/bots/a/restart');
    await grab('POST', '/bots/a/stop', { graceMs: 500 });
    await grab('POST', '/config/reload');
    await new Promise((r) => setTimeout(r, 100));
    ws.close();
    await d.close();
    // The secret did reach the bot (so this test can fail): it printed it, and the API masked it.
    expect(readFileSync(path.join(dataDir, 'logs', 'tg.log'), 'utf8')).toContain(SECRETS.KRAKEN_API_KEY_3);
    expect(bodies.join('\n')).toContain('key=***');
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const f of readdirSync(dir)) {
        const p = path.join(dir, f);
        if (statSync(p).isDirectory()) walk(p);
        else if (!/\/logs\/[^/]+\.log(\.\d+)?$/.test(p)) files.push(readFileSync(p).toString('latin1'));
      }
    };
    walk(dataDir);
    const haystacks = { responses: bodies.join('\n'), stream: streamed, logs, files: files.join('\n') };
    expect(streamed.length).toBeGreaterThan(100);
    expect(logs.length).toBeGreaterThan(100);
    for (const [where, text] of Object.entries(haystacks)) {
      for (const [name, secret] of Object.entries(SECRETS)) expect(text.includes(secret), `${name} in ${where}`).toBe(false);
    }
  });
});
