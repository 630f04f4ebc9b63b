/**
 * SPEC 17: the cause of nonce errors, and the action that fits. Real bots printing real error
 * lines, a real local HTTP server playing the exchanges' time endpoints (with a skewed clock), a
 * real process holding a leased key.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import http from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { afterScans, fixture, killChildren, makeConfig, startTestDaemon, sweepLeftovers, TEST_TAG, waitFor, type TestDaemon } from './helper.js';
import { alertText } from '../src/alerts/format.js';
import { isAlive } from '../src/host/procfs.js';
import { CLI } from './proc-helper.js';

const daemons: TestDaemon[] = [];
const children: ChildProcess[] = [];
let server: http.Server;
let skewMs = 0;
let timeUrl = '';
beforeEach(async () => {
  skewMs = 0;
  // The exchange's time endpoint: its clock is ours plus skewMs (Binance's shape: {serverTime}).
  server = http.createServer((_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ serverTime: Date.now() + skewMs }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  timeUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}/api/v3/time`;
});
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.close();
  await killChildren(children);
  await new Promise((r) => server.close(r));
  expect(sweepLeftovers()).toEqual([]);
});

const SECRETS = {
  NC_K1: 'nc-pub-key-1-aaaaaaaa',
  NC_S1: 'nc-sec-key-1-aaaaaaaa',
  NC_K2: 'nc-pub-key-2-bbbbbbbb',
  NC_S2: 'nc-sec-key-2-bbbbbbbb',
};
const keys = { k1: { keyEnv: 'NC_K1', secretEnv: 'NC_S1' }, k2: { keyEnv: 'NC_K2', secretEnv: 'NC_S2' } };
const pool = (p: string[]) => ({ pool: p, envKey: 'EXCHANGE_KEY', envSecret: 'EXCHANGE_SECRET' });

async function daemon(accounts: Record<string, Record<string, unknown>>, daemonCfg: object = {}): Promise<TestDaemon> {
  const cfg = makeConfig({ keys, daemon: { scanIntervalMs: 200, ...daemonCfg }, clock: { maxOffsetMs: 500, sources: { binance: timeUrl, kraken: timeUrl } }, accounts });
  const d = await startTestDaemon(cfg, { env: { ...process.env, ...SECRETS, BOTWARDEN_TOKEN: undefined } });
  daemons.push(d);
  return d;
}

const history = (d: TestDaemon, types: string[], account?: string) => d.events.history(0, 10_000, { types, ...(account ? { account } : {}) }) as Record<string, any>[];
const nonce = { rotateAfter: 3, windowMs: 60_000, cooldownMs: 60_000 };
const BINANCE_1021 = 'binance {"code":-1021,"msg":"Timestamp for this request is outside of the recvWindow."}';
const KRAKEN_NONCE = 'InvalidNonce: kraken {"error":["EAPI:Invalid nonce"]}';
const KRAKEN_KEY = 'AuthenticationError: kraken {"error":["EAPI:Invalid key"]}';

describe('the cause of nonce errors (SPEC 17)', () => {
  it("clock: Binance -1021 with this machine 2.4 s ahead: clock degraded, diagnosis clock, no rotation, fatal naming the offset, and the alert says what to do", async () => {
    skewMs = -2400;
    const d = await daemon({
      ncclock: { broker: 'binance', command: fixture('bot.js'), startMs: 100, keys: pool(['k1', 'k2']), env: { BOT_PRINT: [BINANCE_1021, BINANCE_1021, BINANCE_1021].join('|') }, nonceErrors: { patterns: ['binance'], ...nonce } },
    });
    await d.req('POST', '/bots/ncclock/start');
    const fatal = await waitFor(async () => {
      const b = (await d.req('GET', '/bots/ncclock')).body;
      return b.state === 'fatal' ? b : null;
    }, { timeoutMs: 8000, what: 'fatal on the clock' });
    const diag = history(d, ['nonce.diagnosis'], 'ncclock')[0]!;
    expect(diag).toMatchObject({ cause: 'clock', keyId: 'k1' });
    expect(diag.evidence).toMatch(/2\.\d s ahead of Binance/);
    const f = history(d, ['bot.fatal'], 'ncclock').at(-1)!;
    expect(f).toMatchObject({ reason: 'clock' });
    expect(f.message).toMatch(/ahead of Binance/);
    expect(history(d, ['key.rotated'], 'ncclock')).toEqual([]);
    expect(history(d, ['nonce.error'], 'ncclock')[0]).toMatchObject({ kind: 'nonce' });
    expect((await d.req('GET', '/keys')).body.keys.find((k: { id: string }) => k.id === 'k1')).toMatchObject({ state: 'free' });
    const clock = (await d.req('GET', '/clock')).body;
    expect(clock.offsets[0]).toMatchObject({ broker: 'binance', error: null });
    expect(clock.offsets[0].offsetMs).toBeLessThan(-2000);
    const health = (await d.req('GET', '/health')).body;
    expect(health.checks.find((c: { name: string }) => c.name === 'clock')).toMatchObject({ status: 'degraded' });
    expect((await d.req('GET', '/metrics')).text).toMatch(/botwarden_clock_offset_seconds\{broker="binance"\} -2\.\d+/);
    const text = alertText({ ...diag, id: 1, type: 'nonce.diagnosis', at: new Date().toISOString() } as never, 'vps-1', 1);
    expect(text).toMatch(/ncclock/);
    expect(text).toMatch(/2\.\d s ahead of Binance.*keys were not rotated.*fix time sync/is);
    expect(fatal.lastExit).toMatchObject({ cause: 'stopped', reason: 'clock' });
  });

  it('key rejected: the key is set aside (never leased again until enabled); the bot runs on the next key', async () => {
    const d = await daemon({
      ncrej: { command: fixture('bot.js'), startMs: 100, keys: pool(['k1', 'k2']), env: { BOT_PRINT: [KRAKEN_KEY, KRAKEN_KEY, KRAKEN_KEY].join('|') }, nonceErrors: { patterns: ['kraken'], ...nonce } },
      ncother: { command: fixture('bot.js'), startMs: 100, keys: pool(['k1']) },
    });
    await d.req('POST', '/bots/ncrej/start');
    const onK2 = await waitFor(async () => {
      const b = (await d.req('GET', '/bots/ncrej')).body;
      return b.keyId === 'k2' && b.pid ? b : null;
    }, { timeoutMs: 8000, what: 'rotated to k2' });
    expect(onK2.keyId).toBe('k2');
    expect(history(d, ['nonce.diagnosis'], 'ncrej')[0]).toMatchObject({ cause: 'key-rejected', keyId: 'k1' });
    expect(history(d, ['key.rotated'], 'ncrej')[0]).toMatchObject({ from: 'k1', to: 'k2', rejected: true });
    expect((await d.req('GET', '/keys')).body.keys.find((k: { id: string }) => k.id === 'k1')).toMatchObject({ state: 'rejected', cooldownUntil: null });
    // Never leased again until enabled.
    expect((await d.req('POST', '/bots/ncother/start')).body.code).toBe('NO_FREE_KEY');
    // The operator's way: botwarden keys enable k1 (the CLI finds the daemon in its data dir).
    // (Not spawnSync: this daemon runs in the test's own process and must answer meanwhile.)
    const cli = await promisify(execFile)(process.execPath, [CLI, '--data-dir', d.dataDir, 'keys', 'enable', 'k1'], { encoding: 'utf8', env: { ...process.env, BOTWARDEN_TOKEN: '' } });
    expect(cli.stderr, cli.stderr).toBe('');
    expect(cli.stdout).toMatch(/^k1: free \(enabled again\)/);
    const again = await d.req('POST', '/keys/k1/enable');
    expect(again.body).toMatchObject({ enabled: false, key: { id: 'k1', state: 'free' } });
    expect((await d.req('POST', '/keys/nope/enable')).body.code).toBe('UNKNOWN_KEY');
    expect((await d.req('POST', '/bots/ncother/start')).status).toBe(201);
  });

  it('shared key: a process started by hand with the leased key in its environment (no match) is a duplicate within 2 scans; the diagnosis names its pid', async () => {
    const d = await daemon({
      ncshare: { command: fixture('bot.js'), startMs: 100, duplicates: 'report', keys: pool(['k1', 'k2']), env: { BOT_TICK_MS: '100000' }, nonceErrors: { patterns: ['kraken'], ...nonce } },
    });
    const s = await d.req('POST', '/bots/ncshare/start');
    expect(s.body.keyId).toBe('k1');
    const copy = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore', env: { ...process.env, BW_TEST_TAG: TEST_TAG, MY_KEY: SECRETS.NC_K1 } });
    children.push(copy);
    const t0 = Date.now();
    const det = await waitFor(() => history(d, ['duplicate.detected'], 'ncshare').find((e) => e.pid === copy.pid), { timeoutMs: 3000, what: 'the holder found' });
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(det).toMatchObject({ by: 'key', policy: 'report' });
    // Now the bot's own nonce errors trip the breaker: the diagnosis names the holder.
    const log = `${d.dataDir}/logs/ncshare.log`;
    const { appendFileSync } = await import('node:fs');
    for (let i = 0; i < 3; i++) appendFileSync(log, `${KRAKEN_NONCE}\n`);
    const diag = await waitFor(() => history(d, ['nonce.diagnosis'], 'ncshare')[0], { timeoutMs: 5000, what: 'diagnosis' });
    expect(diag.cause).toBe('shared-key');
    expect(diag.evidence).toContain(`pid ${copy.pid}`);
    await waitFor(async () => (await d.req('GET', '/bots/ncshare')).body.keyId === 'k2', { timeoutMs: 5000, what: 'rotated' });
  });

  it('kill mode: the holder is killed within 2 scans', async () => {
    const d = await daemon({ nckill: { command: fixture('bot.js'), startMs: 100, duplicates: 'kill', stop: { graceMs: 300 }, keys: pool(['k1']) } });
    await d.req('POST', '/bots/nckill/start');
    // Another botwarden daemon on this machine holds every key in its environment too: never a copy
    // (the PostgreSQL chaos walk found one daemon's hunter SIGTERMing the other).
    const daemonLike = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', '/opt/botwarden/dist/cli.js', 'daemon'], { stdio: 'ignore', env: { ...process.env, BW_TEST_TAG: TEST_TAG, ...SECRETS } });
    children.push(daemonLike);
    const copy = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore', env: { ...process.env, BW_TEST_TAG: TEST_TAG, OTHER: SECRETS.NC_S1 } });
    children.push(copy);
    // The event follows the kill once the process is seen gone.
    const killed = await waitFor(() => history(d, ['duplicate.killed'], 'nckill')[0], { timeoutMs: 3000, what: 'holder killed' });
    expect(killed).toMatchObject({ pid: copy.pid });
    expect(copy.exitCode !== null || copy.signalCode !== null || !isAlive(copy.pid!, null)).toBe(true);
    await afterScans(d, 2);
    expect(isAlive(daemonLike.pid!, null)).toBe(true);
    expect(history(d, ['duplicate.detected'], 'nckill').map((e) => e.pid)).not.toContain(daemonLike.pid);
  });

  it('unknown: Kraken nonce errors with nothing else wrong rotate, and the evidence names the clock offset and that no process here holds the key', async () => {
    skewMs = 30;
    const d = await daemon({
      ncunk: { broker: 'kraken', command: fixture('bot.js'), startMs: 100, keys: pool(['k1', 'k2']), env: { BOT_PRINT: [KRAKEN_NONCE, KRAKEN_NONCE, KRAKEN_NONCE].join('|') }, nonceErrors: { patterns: ['kraken'], ...nonce } },
    });
    await d.req('POST', '/bots/ncunk/start');
    await waitFor(async () => (await d.req('GET', '/bots/ncunk')).body.keyId === 'k2', { timeoutMs: 8000, what: 'rotated' });
    const diag = history(d, ['nonce.diagnosis'], 'ncunk')[0]!;
    expect(diag.cause).toBe('unknown');
    expect(diag.evidence).toMatch(/clock is within 500 ms of Kraken \(\+?-?\d+ ms\)/);
    expect(diag.evidence).toMatch(/no process on this machine holds key k1/);
    expect(history(d, ['key.rotated'], 'ncunk')[0]).toMatchObject({ from: 'k1', to: 'k2', cause: 'unknown' });
  });
});
