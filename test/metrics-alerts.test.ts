/**
 * /metrics scraped from a real daemon and parsed by a real Prometheus text parser;
 * alerts delivered to a local HTTP receiver playing each service.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { afterEach, describe, expect, it } from 'vitest';
import { fixture, makeConfig, startTestDaemon, sweepLeftovers, TEST_TAG, tmpDir, waitFor, type TestDaemon } from './helper.js';
import { connectTo, killDaemons, spawnDaemon, writeConfig } from './proc-helper.js';

const daemons: TestDaemon[] = [];
const servers: http.Server[] = [];
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.close();
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    s.close();
  }
  killDaemons();
  expect(sweepLeftovers()).toEqual([]);
});

const SECRETS = { KRAKEN_API_KEY: 'pubkey-metrics-1', KRAKEN_API_SECRET: 'secret-metrics-1', KRAKEN_API_KEY_2: 'pubkey-metrics-2', KRAKEN_API_SECRET_2: 'secret-metrics-2' };
const keys = { k1: { keyEnv: 'KRAKEN_API_KEY', secretEnv: 'KRAKEN_API_SECRET' }, k2: { keyEnv: 'KRAKEN_API_KEY_2', secretEnv: 'KRAKEN_API_SECRET_2' } };

type Family = { name: string; type: string; metrics: { value: string; labels?: Record<string, string> }[] };
async function scrape(d: TestDaemon): Promise<Map<string, Family>> {
  const r = await d.req('GET', '/metrics');
  expect(r.status).toBe(200);
  return new Map((parsePrometheusTextFormat(r.text) as Family[]).map((f) => [f.name, f]));
}
const value = (m: Map<string, Family>, name: string, labels: Record<string, string>) =>
  Number(m.get(name)?.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v))?.value ?? NaN);

describe('metrics', () => {
  it('one state at 1 per account, counters that rise, bot_up back to 0 after a stop; token needed', async () => {
    const d = await startTestDaemon(
      makeConfig({
        keys,
        accounts: {
          a: { command: fixture('bot.js'), startMs: 100, match: `metrics-dup-${TEST_TAG}` },
          n: { command: fixture('nonce-bot.js'), startMs: 100, keys: { pool: ['k1', 'k2'], envKey: 'KRAKEN_API_KEY', envSecret: 'KRAKEN_API_SECRET' }, nonceErrors: { patterns: ['kraken'], rotateAfter: 3 }, env: { NONCE_FAIL_KEY: SECRETS.KRAKEN_API_KEY } },
        },
        daemon: { scanIntervalMs: 100 },
      }),
      { env: { ...process.env, ...SECRETS, BOTWARDEN_TOKEN: undefined } },
    );
    daemons.push(d);
    expect((await d.req('GET', '/metrics', { token: null })).status).toBe(401);
    let m = await scrape(d);
    for (const a of ['a', 'n']) {
      const states = m.get('botwarden_bot_state')!.metrics.filter((x) => x.labels?.account === a);
      expect(states).toHaveLength(6);
      expect(states.filter((x) => Number(x.value) === 1)).toHaveLength(1);
    }
    expect(m.get('botwarden_build_info')).toBeDefined();
    expect(m.get('process_cpu_user_seconds_total')?.type).toBe('COUNTER');
    expect(m.get('botwarden_nonce_errors_total')?.type).toBe('COUNTER');

    await d.req('POST', '/bots/a/start');
    await d.req('POST', '/bots/n/start');
    // The nonce bot on k1 trips the breaker: rotated to k2, restarted.
    await waitFor(async () => (await d.req('GET', '/bots/n')).body.keyId === 'k2', { what: 'rotation' });
    // A copy started by hand is killed.
    const dup = spawn(process.execPath, [fixture('bot.js')[1]!, `metrics-dup-${TEST_TAG}`], { env: { ...process.env, BW_TEST_TAG: TEST_TAG }, stdio: 'ignore' });
    await waitFor(async () => value(await scrape(d), 'botwarden_duplicates_killed_total', { account: 'a' }) === 1, { what: 'duplicate killed', timeoutMs: 8000 });
    expect(dup.exitCode !== null || dup.signalCode !== null || (await new Promise((r) => dup.once('exit', r)), true)).toBe(true);
    await waitFor(async () => (await d.req('GET', '/bots/a')).body.state === 'running');
    m = await scrape(d);
    expect(value(m, 'botwarden_bot_up', { account: 'a' })).toBe(1);
    expect(value(m, 'botwarden_bot_state', { account: 'a', state: 'running' })).toBe(1);
    expect(value(m, 'botwarden_bot_start_time_seconds', { account: 'a' })).toBeGreaterThan(Date.now() / 1000 - 60);
    expect(value(m, 'botwarden_key_rotations_total', { account: 'n' })).toBe(1);
    expect(value(m, 'botwarden_bot_restarts_total', { account: 'n' })).toBeGreaterThanOrEqual(1);
    expect(value(m, 'botwarden_nonce_errors_total', { account: 'n' })).toBeGreaterThanOrEqual(3);
    expect(value(m, 'botwarden_key_state', { key: 'k1', state: 'cooling' })).toBe(1);
    expect(value(m, 'botwarden_key_state', { key: 'k2', state: 'leased' })).toBe(1);

    await d.req('POST', '/bots/a/stop');
    m = await scrape(d);
    expect(value(m, 'botwarden_bot_up', { account: 'a' })).toBe(0);
    expect(value(m, 'botwarden_bot_state', { account: 'a', state: 'stopped' })).toBe(1);
    expect(Number.isNaN(value(m, 'botwarden_bot_start_time_seconds', { account: 'a' }))).toBe(true);
    const text = (await d.req('GET', '/metrics')).text;
    expect(text).not.toMatch(/pid="/);
    for (const s of Object.values(SECRETS)) expect(text).not.toContain(s);
  });
});

interface Got {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A local receiver: answers from a script of statuses (then 200), records what arrived. */
async function receiver(script: { status: number; headers?: Record<string, string> }[] = []) {
  const got: Got[] = [];
  const tries: number[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      tries.push(Date.now());
      const step = script.shift() ?? { status: 200 };
      if (step.status === 200) got.push({ path: req.url ?? '', headers: req.headers, body });
      res.writeHead(step.status, step.headers ?? {}).end('ok');
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { got, tries, base };
}

const fatalBot = { command: fixture('crash.js'), startMs: 1000, restart: { policy: 'never' } };

describe('alerts', () => {
  it('each format posts what its service expects; every message names account, daemon and what to do', async () => {
    const r = await receiver();
    const events = ['bot.fatal'];
    const d = await startTestDaemon(
      makeConfig({
        daemon: { name: 'vps-test' },
        alerts: {
          gen: { format: 'generic', url: `${r.base}/generic/SECRET-PATH-1`, events },
          sl: { format: 'slack', url: `${r.base}/slack/SECRET-PATH-2`, events },
          dc: { format: 'discord', url: `${r.base}/discord/SECRET-PATH-3`, events },
          tg: { format: 'telegram', url: `${r.base}/bot123:SECRET-TOKEN/sendMessage`, chatId: '-100123', events },
          nt: { format: 'ntfy', url: `${r.base}/ntfy/SECRET-PATH-5`, events, accounts: ['f'] },
          other: { format: 'slack', url: `${r.base}/other`, events, accounts: ['nobody'] },
        },
        accounts: { f: fatalBot },
      }),
    );
    daemons.push(d);
    await d.req('POST', '/bots/f/start');
    await waitFor(() => r.got.length >= 5, { what: 'five deliveries', timeoutMs: 8000 });
    await new Promise((res) => setTimeout(res, 200));
    expect(r.got).toHaveLength(5); // `other` filters on another account
    const by = (p: string) => r.got.find((g) => g.path.startsWith(p))!;
    const gen = JSON.parse(by('/generic').body);
    expect(gen).toMatchObject({ daemon: 'vps-test', event: { type: 'bot.fatal', account: 'f' } });
    expect(gen.text).toContain('Account f');
    expect(JSON.parse(by('/slack').body)).toEqual({ text: expect.stringContaining('[vps-test] Account f: went FATAL') });
    const dc = JSON.parse(by('/discord').body);
    expect(Object.keys(dc)).toEqual(['content']);
    expect(dc.content.length).toBeLessThanOrEqual(2000);
    expect(dc.content).toMatch(/last exit: exited by itself, code 3/);
    expect(dc.content).toMatch(/fix the cause/);
    const tg = JSON.parse(by('/bot123').body);
    expect(tg).toEqual({ chat_id: '-100123', text: expect.stringContaining('Account f') });
    const nt = by('/ntfy');
    expect(nt.headers.title).toContain('bot.fatal f');
    expect(nt.headers.priority).toBe('high');
    expect(nt.body).toContain('went FATAL');

    const list = (await d.req('GET', '/alerts')).body.alerts as { name: string; url: string; state: string; queued: number }[];
    expect(list.find((a) => a.name === 'gen')).toMatchObject({ format: 'generic', state: 'ok', queued: 0, lastError: null });
    const all = JSON.stringify(list) + JSON.stringify((await d.req('GET', '/events/history?limit=1000')).body);
    for (const s of ['SECRET-PATH', 'SECRET-TOKEN']) expect(all).not.toContain(s);
    expect((await d.req('POST', '/alerts/nope/test')).status).toBe(404);
    expect((await d.req('POST', '/alerts/sl/test')).status).toBe(202);
    await waitFor(() => r.got.some((g) => g.path.startsWith('/slack') && g.body.includes('test message')), { what: 'test message' });
  });

  it('retries a 500 twice and waits out a 429 Retry-After; a failing target degrades /health', async () => {
    const r = await receiver([{ status: 500 }, { status: 500 }, { status: 429, headers: { 'retry-after': '1' } }]);
    const d = await startTestDaemon(makeConfig({ alerts: { s: { format: 'slack', url: `${r.base}/s`, events: ['bot.fatal'] } }, accounts: { f: fatalBot } }));
    daemons.push(d);
    await d.req('POST', '/bots/f/start');
    await waitFor(() => r.tries.length >= 2, { what: 'two tries' });
    const health = await d.req('GET', '/health');
    expect(health.body.status).toBe('degraded');
    expect(health.body.checks.find((c: { name: string }) => c.name === 'alerts')).toMatchObject({ status: 'degraded' });
    expect((await d.req('GET', '/alerts')).body.alerts[0]).toMatchObject({ state: 'failing', lastError: 'HTTP 500', queued: 1 });
    await waitFor(() => r.got.length === 1, { what: 'delivery', timeoutMs: 10_000 });
    expect(r.tries).toHaveLength(4);
    expect(r.tries[3]! - r.tries[2]!).toBeGreaterThanOrEqual(950); // Retry-After: 1
    expect((await d.req('GET', '/alerts')).body.alerts[0]).toMatchObject({ state: 'ok', queued: 0 });
  });

  it('folds repeats of one (type, account) inside minIntervalMs into one later message that counts them', async () => {
    const r = await receiver();
    const d = await startTestDaemon(
      makeConfig({
        alerts: { s: { format: 'slack', url: `${r.base}/s`, events: ['nonce.error'], minIntervalMs: 1500 } },
        accounts: { n: { command: fixture('nonce-bot.js'), startMs: 100, env: { NONCE_ERRORS: '40' }, nonceErrors: { patterns: ['kraken'], rotateAfter: 1000 } } },
      }),
    );
    daemons.push(d);
    await d.req('POST', '/bots/n/start');
    await waitFor(() => r.got.length >= 2, { what: 'two messages', timeoutMs: 8000 });
    await new Promise((res) => setTimeout(res, 1800));
    const texts = r.got.map((g) => JSON.parse(g.body).text as string);
    expect(texts.length).toBeLessThanOrEqual(3);
    expect(texts[1]).toMatch(/\((\d+) times since the last message\)/);
    const folded = texts.slice(1).reduce((n, t) => n + Number(/\((\d+) times/.exec(t)?.[1] ?? 1), 1);
    expect(folded).toBe(40);
  });

  it('an alert raised while the target is down arrives after the daemon is SIGKILLed and restarted', async () => {
    const r = await receiver(Array.from({ length: 1000 }, () => ({ status: 503 })));
    const dir = tmpDir();
    const cfg = writeConfig(dir, { alerts: { s: { format: 'slack', url: `${r.base}/s`, events: ['bot.fatal'] } }, accounts: { f: fatalBot } });
    const first = spawnDaemon(dir, cfg);
    const c = await connectTo(dir, first.pid);
    await c.req('POST', '/bots/f/start');
    await waitFor(() => r.tries.length >= 1, { what: 'a failed try' });
    first.child.kill('SIGKILL');
    await first.exited;
    r.tries.length = 0;
    // The target is back: everything the script still holds is 200.
    (r as unknown as { got: Got[] }).got.length = 0;
    servers[servers.length - 1]!.removeAllListeners('request');
    servers[servers.length - 1]!.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      let body = '';
      req.on('data', (x: Buffer) => (body += x.toString()));
      req.on('end', () => {
        r.got.push({ path: req.url ?? '', headers: req.headers, body });
        res.end('ok');
      });
    });
    const second = spawnDaemon(dir, cfg);
    await connectTo(dir, second.pid);
    await waitFor(() => r.got.length === 1, { what: 'delivery after restart', timeoutMs: 10_000 });
    expect(JSON.parse(r.got[0]!.body).text).toContain('went FATAL');
    // Nothing about the webhook in the daemon's logs or data dir files but the database.
    const files = readdirSync(dir).filter((f) => !f.startsWith('botwarden.db') && !f.endsWith('.yaml'));
    for (const f of files) if (!f.endsWith('logs')) expect(readFileSync(path.join(dir, f), 'utf8')).not.toContain(r.base);
  });
});
