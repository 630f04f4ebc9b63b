/**
 * SPEC 18 audit trail: one `audit` event after each call that changes something and after each
 * refusal, naming who (the token's name, or anonymous), with which role, from where, what and how
 * it ended; and the actions botwarden takes by itself name their part (system:breaker,
 * system:hunter, system:fence).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import type { Config } from '../src/config/schema.js';
import { CLI } from './proc-helper.js';
import { fixture, FIXTURES, killChildren, makeConfig, startTestDaemon, sweepLeftovers, TEST_TAG, waitFor, type TestDaemon } from './helper.js';

const TOKENS = { AU_PHONE_TOKEN: 'phone-token-abcdef0123456789', AU_CI_TOKEN: 'ci-token-abcdef0123456789ab' };
const daemons: TestDaemon[] = [];
const strays: ChildProcess[] = [];
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.close();
  await killChildren(strays);
  expect(sweepLeftovers()).toEqual([]);
});

function withTokens(config: Config): Config {
  Object.assign(process.env, TOKENS);
  config.auth = parseConfig({ auth: { tokens: { phone: { role: 'viewer', tokenEnv: 'AU_PHONE_TOKEN' }, ci: { role: 'operator', tokenEnv: 'AU_CI_TOKEN' } } } }, { baseDir: FIXTURES }).auth;
  return config;
}

async function daemon(cfg: Parameters<typeof makeConfig>[0], env: Record<string, string> = {}) {
  const d = await startTestDaemon(withTokens(makeConfig(cfg)), { env: { ...process.env, ...env, BOTWARDEN_TOKEN: undefined } });
  daemons.push(d);
  return d;
}

const audits = (d: TestDaemon) => d.events.history(0, 10_000, { types: ['audit'] });

describe('audit events', () => {
  it('one after each change and each refusal, with the actor, role, remote, method, route pattern, account and status; none for a read', async () => {
    const d = await daemon({ accounts: { au1: { command: fixture('bot.js'), startMs: 100, stop: { graceMs: 2000 } } } });
    const calls: [string, string, string | null | undefined, object][] = [
      ['POST', '/bots/au1/start', TOKENS.AU_CI_TOKEN, { actor: 'ci', role: 'operator', route: '/bots/:account/start', account: 'au1', status: 201 }],
      ['POST', '/bots/au1/stop', TOKENS.AU_PHONE_TOKEN, { actor: 'phone', role: 'viewer', route: '/bots/:account/stop', account: 'au1', status: 403 }],
      ['POST', '/bots/au1/restart', undefined, { actor: 'api-token', role: 'admin', route: '/bots/:account/restart', account: 'au1', status: 200 }],
      ['POST', '/bots/au1/stop', TOKENS.AU_CI_TOKEN, { actor: 'ci', role: 'operator', route: '/bots/:account/stop', account: 'au1', status: 200 }],
      ['POST', '/config/reload', TOKENS.AU_CI_TOKEN, { actor: 'ci', role: 'operator', route: '/config/reload', status: 403 }],
      ['GET', '/bots', null, { actor: 'anonymous', role: null, method: 'GET', route: '/bots', status: 401 }],
      ['GET', '/bots/au1/logs', 'a-wrong-token-0000000000', { actor: 'anonymous', role: null, method: 'GET', route: '/bots/:account/logs', account: 'au1', status: 401 }],
      ['POST', '/bots/nope/start', TOKENS.AU_CI_TOKEN, { actor: 'ci', route: '/bots/:account/start', account: 'nope', status: 404 }],
    ];
    for (const [method, url, token, want] of calls) {
      const before = audits(d).length;
      const res = await d.req(method, url, { token });
      // Committed with the reply: there when the caller reads its answer.
      const after = audits(d);
      expect(after.length, `${method} ${url}`).toBe(before + 1);
      expect(after.at(-1), `${method} ${url} -> ${res.status}`).toMatchObject({ type: 'audit', method, remote: '127.0.0.1', ...want });
      if (!('account' in want)) expect(after.at(-1)).not.toHaveProperty('account');
    }
    // Reads by a token change nothing and are not audited.
    const n = audits(d).length;
    for (const token of [TOKENS.AU_PHONE_TOKEN, TOKENS.AU_CI_TOKEN, undefined]) {
      await d.req('GET', '/bots', { token });
      await d.req('GET', '/events/history?types=audit', { token });
    }
    expect(audits(d).length).toBe(n);
    // And the audit trail is readable by a viewer, with the route patterns (never a token).
    const viewed = await d.req('GET', '/events/history?types=audit', { token: TOKENS.AU_PHONE_TOKEN });
    expect(viewed.body.events.map((e: { actor: string }) => e.actor)).toEqual(['ci', 'phone', 'api-token', 'ci', 'ci', 'anonymous', 'anonymous', 'ci']);
    expect(viewed.text).not.toContain(TOKENS.AU_CI_TOKEN);
  });

  it('a refused websocket is audited too', async () => {
    const d = await daemon({ accounts: { au2: { command: fixture('bot.js') } } });
    const status = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(`${d.url.replace('http', 'ws')}/bots/au2/logs/stream?token=${TOKENS.AU_PHONE_TOKEN}`);
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => reject(new Error('a viewer opened the logs stream')));
      ws.on('error', () => undefined);
    });
    expect(status).toBe(403);
    expect(audits(d).at(-1)).toMatchObject({ actor: 'phone', role: 'viewer', method: 'GET', route: '/bots/:account/logs/stream', account: 'au2', status: 403 });
  });
});

describe('system actors', () => {
  it('the breaker: bot.stopping (rotation) and key.rotated carry system:breaker', async () => {
    const keyEnv = { AU_KEY_1: 'au-key-one-111111', AU_SECRET_1: 'au-secret-one-111111', AU_KEY_2: 'au-key-two-222222', AU_SECRET_2: 'au-secret-two-222222' };
    const d = await daemon(
      {
        keys: { k1: { keyEnv: 'AU_KEY_1', secretEnv: 'AU_SECRET_1' }, k2: { keyEnv: 'AU_KEY_2', secretEnv: 'AU_SECRET_2' } },
        accounts: {
          au3: {
            command: fixture('nonce-bot.js'),
            env: { NONCE_FAIL_KEY: keyEnv.AU_KEY_1 },
            keys: { pool: ['k1', 'k2'], envKey: 'KRAKEN_API_KEY', envSecret: 'KRAKEN_API_SECRET' },
            nonceErrors: { patterns: ['kraken'], rotateAfter: 3, windowMs: 60_000, cooldownMs: 900_000 },
            stop: { graceMs: 2000 },
          },
        },
      },
      keyEnv,
    );
    expect((await d.req('POST', '/bots/au3/start')).status).toBe(201);
    const rotated = await waitFor(() => d.events.history(0, 1000, { types: ['key.rotated'] })[0], { what: 'key.rotated', timeoutMs: 10_000 });
    expect(rotated).toMatchObject({ account: 'au3', from: 'k1', to: 'k2', actor: 'system:breaker' });
    expect(d.events.history(0, 1000, { types: ['bot.stopping'] }).find((e) => e.reason === 'rotation')).toMatchObject({ actor: 'system:breaker' });
  });

  it('the hunter: duplicate.detected and duplicate.killed carry system:hunter', async () => {
    const d = await daemon({ daemon: { scanIntervalMs: 200 }, accounts: { au4: { command: fixture('bot.js'), startMs: 100, stop: { graceMs: 500 } } } });
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BOTWARDEN_') || k === 'BOTWARDEN_SCOPE'));
    strays.push(spawn(process.execPath, [`${FIXTURES}bot.js`], { env: { ...clean, BW_TEST_TAG: TEST_TAG, BOTWARDEN_ACCOUNT: 'au4' }, stdio: 'ignore' }));
    const killed = await waitFor(() => d.events.history(0, 1000, { types: ['duplicate.killed'] })[0], { what: 'duplicate.killed', timeoutMs: 5000 });
    expect(killed).toMatchObject({ account: 'au4', actor: 'system:hunter' });
    expect(d.events.history(0, 1000, { types: ['duplicate.detected'] })[0]).toMatchObject({ account: 'au4', actor: 'system:hunter' });
  });

  it('the fence: a lost lease stops the bot with bot.stopping reason fence, actor system:fence', async () => {
    const d = await daemon({ accounts: { au5: { command: fixture('bot.js'), startMs: 100, stop: { graceMs: 500 } } } });
    const started = await d.req('POST', '/bots/au5/start');
    expect(started.status).toBe(201);
    // The code path a lease that could not be renewed takes (PostgreSQL mode), driven directly.
    await d.supervisor.get('au5').fence(started.body.lock.token as number);
    expect(d.events.history(0, 1000, { types: ['bot.stopping'] }).at(-1)).toMatchObject({ account: 'au5', reason: 'fence', actor: 'system:fence' });
  });
});

describe('botwarden audit', () => {
  it('lists the audit events: a table for people, --json for scripts, --account', async () => {
    const d = await daemon({ accounts: { au6: { command: fixture('bot.js'), startMs: 100, stop: { graceMs: 2000 } }, au7: { command: fixture('bot.js') } } });
    await d.req('POST', '/bots/au6/start', { token: TOKENS.AU_CI_TOKEN });
    await d.req('POST', '/bots/au6/stop', { token: TOKENS.AU_PHONE_TOKEN });
    await d.req('POST', '/bots/au6/stop');
    await d.req('POST', '/bots/au7/stop', { token: TOKENS.AU_CI_TOKEN });
    const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BOTWARDEN_') || k === 'BOTWARDEN_SCOPE')), NO_COLOR: '1' };
    const run = (args: string[]) =>
      new Promise<{ code: number; stdout: string }>((resolve) =>
        execFile(process.execPath, [CLI, '--data-dir', d.dataDir, ...args], { env, timeout: 20_000 }, (err, stdout) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout })),
      );
    const t = await run(['audit', '--account', 'au6']);
    expect(t.code).toBe(0);
    const lines = t.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID\s+AT\s+ACTOR\s+ROLE\s+REMOTE\s+METHOD\s+ROUTE\s+ACCOUNT\s+STATUS$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/).slice(2).join(' '))).toEqual([
      'ci operator 127.0.0.1 POST /bots/:account/start au6 201',
      'phone viewer 127.0.0.1 POST /bots/:account/stop au6 403',
      'api-token admin 127.0.0.1 POST /bots/:account/stop au6 200',
    ]);
    const j = await run(['audit', '--json', '-n', '2']);
    expect(JSON.parse(j.stdout).events.map((e: { actor: string; account: string }) => `${e.actor} ${e.account}`)).toEqual(['api-token au6', 'ci au7']);
  });
});
