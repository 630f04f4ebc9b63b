/**
 * Several machines: PostgreSQL leases on a real, throwaway cluster, two daemons
 * (`laptop` and `vps`) on one database, a TCP proxy that cuts one off, and real
 * daemon processes SIGKILLed and SIGSTOPped.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { isAlive } from '../src/host/procfs.js';
import { afterScans, fixture, FIXTURES, makeConfig, startTestDaemon, sweepLeftovers, taggedProcesses, tmpDir, waitFor, watchAccount, type TestDaemon } from './helper.js';
import { CutProxy, startPostgres, type TestPg } from './pg-helper.js';
import { connectTo, killDaemons, spawnDaemon, writeConfig } from './proc-helper.js';

let pg: TestPg;
const daemons: TestDaemon[] = [];
const LOCK = { leaseMs: 5000, renewMs: 500 };
const bot = { command: fixture('bot.js'), startMs: 100, stop: { graceMs: 500 }, restart: { policy: 'never' } };

beforeAll(async () => {
  pg = await startPostgres();
}, 60_000);
afterAll(async () => {
  await pg?.stop();
});
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.close();
  killDaemons();
  // Bots die with their (SIGKILLed) daemon a moment later.
  await waitFor(() => taggedProcesses().length === 0, { timeoutMs: 3000, what: 'bots dying with their daemons' }).catch(() => undefined);
  expect(sweepLeftovers()).toEqual([]);
});

async function daemon(name: string, url = pg.url(), accounts: Record<string, Record<string, unknown>> = { pga: bot }, extra: { keys?: object; lock?: object } = {}): Promise<TestDaemon> {
  const { lock = LOCK, ...rest } = extra;
  const d = await startTestDaemon(makeConfig({ daemon: { name, scanIntervalMs: 200 }, lock: { backend: 'postgres', url, ...lock }, accounts, ...rest }));
  daemons.push(d);
  return d;
}

describe('PostgreSQL leases across daemons', () => {
  it('a start on the second daemon is 409 naming the first; tokens grow across daemons; /leases shows both views', async () => {
    const laptop = await daemon('laptop');
    const vps = await daemon('vps');
    const first = await laptop.req('POST', '/bots/pga/start');
    expect(first.status).toBe(201);
    const refused = await vps.req('POST', '/bots/pga/start');
    expect(refused.status).toBe(409);
    expect(refused.body.code).toBe('ACCOUNT_LOCKED');
    expect(refused.body.message).toContain('laptop');
    expect(refused.body.lock.holder).toBe('laptop');
    expect(refused.body.lock.pid).toBe(first.body.pid);
    await waitFor(async () => (await vps.req('GET', '/leases')).body.leases.length === 1, { what: 'the lease cache' });
    const fromVps = (await vps.req('GET', '/leases')).body.leases[0];
    expect(fromVps).toMatchObject({ account: 'pga', holder: 'laptop', mine: false, token: first.body.lock.token });
    expect(Date.parse(fromVps.expiresAt)).toBeGreaterThan(Date.parse(fromVps.since));
    await waitFor(async () => (await laptop.req('GET', '/leases')).body.leases[0]?.mine === true, { what: 'mine' });
    // Both daemons see the other's bot and neither calls it a duplicate.
    await Promise.all([afterScans(laptop, 2), afterScans(vps, 2)]);
    expect(taggedProcesses('pga')).toEqual([first.body.pid]);
    expect([...laptop.events.history(0, 100, { types: ['duplicate.'] }), ...vps.events.history(0, 100, { types: ['duplicate.'] })]).toEqual([]);

    expect((await laptop.req('POST', '/bots/pga/stop')).status).toBe(200);
    const second = await vps.req('POST', '/bots/pga/start');
    expect(second.status).toBe(201);
    expect(second.body.lock.token).toBeGreaterThan(first.body.lock.token);
  });

  it('one key pair is never leased on both daemons (NO_FREE_KEY)', async () => {
    const keys = { k1: { keyEnv: 'PGT_KEY', secretEnv: 'PGT_SECRET' } };
    process.env.PGT_KEY = 'pgt-key-value';
    process.env.PGT_SECRET = 'pgt-secret-value';
    const pool = { keys: { pool: ['k1'], envKey: 'K', envSecret: 'S' } };
    const laptop = await daemon('laptop', pg.url(), { pga: { ...bot, ...pool }, pgb: { ...bot, ...pool } }, { keys });
    const vps = await daemon('vps', pg.url(), { pga: { ...bot, ...pool }, pgb: { ...bot, ...pool } }, { keys });
    expect((await laptop.req('POST', '/bots/pga/start')).body.keyId).toBe('k1');
    const r = await vps.req('POST', '/bots/pgb/start');
    expect(r.status).toBe(409);
    expect(r.body.code).toBe('NO_FREE_KEY');
    expect((await vps.req('GET', '/keys')).body.keys[0]).toMatchObject({ id: 'k1', state: 'leased', account: 'pga' });
  });

  it('racing starts of two accounts sharing one key on two daemons never lease it twice', async () => {
    const keys = { k1: { keyEnv: 'PGT_KEY', secretEnv: 'PGT_SECRET' } };
    process.env.PGT_KEY = 'pgt-key-value';
    process.env.PGT_SECRET = 'pgt-secret-value';
    const pool = { keys: { pool: ['k1'], envKey: 'K', envSecret: 'S' } };
    const accounts = { pga: { ...bot, ...pool }, pgb: { ...bot, ...pool } };
    const laptop = await daemon('laptop', pg.url(), accounts, { keys });
    const vps = await daemon('vps', pg.url(), accounts, { keys });
    for (let round = 0; round < 15; round++) {
      const [ra, rb] = await Promise.all([laptop.req('POST', '/bots/pga/start'), vps.req('POST', '/bots/pgb/start')]);
      expect([ra.status, rb.status].sort(), `round ${round}`).toEqual([201, 409]);
      await Promise.all([laptop.req('POST', '/bots/pga/stop'), vps.req('POST', '/bots/pgb/stop')]);
    }
  });

  it('a rotation on one daemon cools the key down for every daemon (shared cooldowns)', async () => {
    const keys = { k1: { keyEnv: 'PGT_KEY', secretEnv: 'PGT_SECRET' }, k2: { keyEnv: 'PGT_KEY2', secretEnv: 'PGT_SECRET2' } };
    Object.assign(process.env, { PGT_KEY: 'pgt-key-value', PGT_SECRET: 'pgt-secret-value', PGT_KEY2: 'pgt-key-two', PGT_SECRET2: 'pgt-secret-two' });
    const pool = { keys: { pool: ['k1', 'k2'], envKey: 'KRAKEN_API_KEY', envSecret: 'KRAKEN_API_SECRET' } };
    const noisy = { ...bot, command: fixture('nonce-bot.js'), env: { NONCE_FAIL_KEY: 'pgt-key-value' }, nonceErrors: { patterns: ['kraken'], rotateAfter: 3 }, ...pool };
    const laptop = await daemon('laptop', pg.url(), { pga: noisy, pgb: { ...bot, ...pool } }, { keys });
    const vps = await daemon('vps', pg.url(), { pga: noisy, pgb: { ...bot, ...pool } }, { keys });
    expect((await laptop.req('POST', '/bots/pga/start')).body.keyId).toBe('k1');
    await waitFor(async () => (await laptop.req('GET', '/bots/pga')).body.keyId === 'k2', { what: 'rotation to k2' });
    // On the other daemon k1 is cooling and k2 is leased: nothing is free for b.
    const k = (await vps.req('GET', '/keys')).body.keys as { id: string; state: string }[];
    expect(k).toEqual([expect.objectContaining({ id: 'k1', state: 'cooling' }), expect.objectContaining({ id: 'k2', state: 'leased' })]);
    expect((await vps.req('POST', '/bots/pgb/start')).body.code).toBe('NO_FREE_KEY');
  });

  it('200 racing starts split over both daemons: exactly one 201 and never two processes', async () => {
    // What races here is the acquisition, not the lease's timing: a lease long enough that 200
    // requests at once on a loaded machine cannot starve its renewals past the fence budget (with
    // 5 s, both daemons fenced their bot in a run with other files beside it, and a later start won).
    const long = { leaseMs: 30_000, renewMs: 500 };
    const laptop = await daemon('laptop', pg.url(), { pga: bot }, { lock: long });
    const vps = await daemon('vps', pg.url(), { pga: bot }, { lock: long });
    let max = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        max = Math.max(max, taggedProcesses('pga').length);
        await new Promise((r) => setTimeout(r, 3));
      }
    })();
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 ? laptop : vps).req('POST', '/bots/pga/start')));
    await new Promise((r) => setTimeout(r, 300));
    sampling = false;
    await sampler;
    // On failure, what each daemon did with pga (a fence would mean a renewal starved for 1.5 s).
    const story = () => JSON.stringify([laptop, vps].map((d) => d.events.history(0, 1000, { types: ['bot.', 'lock.'], account: 'pga' }).map((e) => [e.type, e.reason ?? ''])));
    expect(results.filter((r) => r.status === 201), story()).toHaveLength(1);
    expect(results.filter((r) => r.status === 409).length).toBe(199);
    expect(max).toBe(1);
  });

  it('a cut-off daemon fences its bot before the other can start it; 503s while cut; heals without a restart', async () => {
    const proxy = new CutProxy(pg.port);
    await proxy.listen();
    try {
      const laptop = await daemon('laptop', pg.url(proxy.port));
      const vps = await daemon('vps');
      const events: { type: string; reason?: string; at: string }[] = [];
      laptop.events.subscribe((e) => events.push(e));
      const started = await laptop.req('POST', '/bots/pga/start');
      expect(started.status).toBe(201);
      const pid = started.body.pid as number;

      proxy.set('blackhole');
      const cutAt = Date.now();
      const watch = watchAccount('pga', pid);
      const vpsStartedAt = await waitFor(async () => ((await vps.req('POST', '/bots/pga/start')).status === 201 ? Date.now() : null), {
        timeoutMs: 15_000,
        intervalMs: 50,
        what: 'vps taking the account over',
      });
      await watch.stop();
      expect(watch.diedAt).toBeGreaterThan(0);
      expect(watch.diedAt).toBeLessThanOrEqual(vpsStartedAt);
      expect(watch.max).toBe(1);
      expect(vpsStartedAt - cutAt).toBeGreaterThanOrEqual(LOCK.leaseMs - LOCK.renewMs - 200); // only after expiry
      expect(events.find((e) => e.type === 'bot.stopping')?.reason).toBe('fence');

      const health = await laptop.req('GET', '/health');
      expect(health.status).toBe(503);
      expect(health.body.checks.find((c: { name: string }) => c.name === 'lock-backend').status).toBe('failing');
      const refused = await laptop.req('POST', '/bots/pga/start');
      expect(refused.status).toBe(503);
      expect(refused.body.code).toBe('LOCK_BACKEND_UNAVAILABLE');
      expect(JSON.stringify(health.body) + refused.text).not.toContain('pg-test-secret-pw');

      proxy.set('reset');
      proxy.set('pass');
      await waitFor(async () => (await laptop.req('GET', '/health')).status === 200, { timeoutMs: 10_000, what: 'laptop healthy again' });
      expect((await laptop.req('POST', '/bots/pga/start')).status).toBe(409); // vps holds it now
    } finally {
      for (const d of daemons.splice(0)) await d.close();
      await proxy.close();
    }
  });

  it('the database down from the start: the API serves and starts get 503', async () => {
    const proxy = new CutProxy(pg.port);
    await proxy.listen();
    proxy.set('reset');
    try {
      const d = await daemon('laptop', pg.url(proxy.port));
      expect((await d.req('GET', '/bots')).status).toBe(200);
      expect((await d.req('GET', '/health')).status).toBe(503);
      const r = await d.req('POST', '/bots/pga/start');
      expect(r.status).toBe(503);
      expect(r.body.code).toBe('LOCK_BACKEND_UNAVAILABLE');
      expect(taggedProcesses('pga')).toEqual([]);
    } finally {
      for (const d of daemons.splice(0)) await d.close();
      await proxy.close();
    }
  });

  it('refuses a config whose stop budget cannot fit in the lease, showing the arithmetic', () => {
    expect(() =>
      parseConfig({ lock: { backend: 'postgres', url: 'postgres://x@127.0.0.1/db', leaseMs: 5000, renewMs: 1000 }, accounts: { pga: { command: ['x'], stop: { graceMs: 3000 } } } }, { baseDir: FIXTURES }),
    ).toThrow(/graceMs 3000 \+ kill 2000 \+ slack 1000 \+ 2 x renewMs 1000 = 8000 ms >= leaseMs 5000/);
  });
});

describe('daemon processes in PostgreSQL mode', () => {
  const cfg = (dir: string, name: string) =>
    writeConfig(dir, { daemon: { name, scanIntervalMs: 200 }, lock: { backend: 'postgres', url: '${PGT_URL}', ...LOCK }, accounts: { pga: bot } });

  // The same data dirs in every test, as the same two daemons restarted: each one's identity is in
  // its data dir, and a new daemon cleans up only the stale leases of its own earlier runs.
  const d1 = tmpDir();
  const d2 = tmpDir();

  async function pair() {
    const env = { PGT_URL: pg.url() };
    const laptop = spawnDaemon(d1, cfg(d1, 'laptop'), [], env);
    const vps = spawnDaemon(d2, cfg(d2, 'vps'), [], env);
    return { laptop, vps, lc: await connectTo(d1, laptop.pid), vc: await connectTo(d2, vps.pid) };
  }

  it('SIGKILL of a daemon: its bot dies within a second, and the other daemon takes over after expiry', async () => {
    const { laptop, lc, vc } = await pair();
    const pid = (await lc.req('POST', '/bots/pga/start')).body.pid as number;
    expect(isAlive(pid, null)).toBe(true);
    laptop.child.kill('SIGKILL');
    const t0 = Date.now();
    // At once (the watchdog sees its stdin close); 3 s for a loaded machine, well short of the
    // 5 s lease it would otherwise run on.
    await waitFor(() => !isAlive(pid, null), { timeoutMs: 3000, what: 'the bot dying with its daemon' });
    expect(Date.now() - t0).toBeLessThan(3000);
    expect((await vc.req('POST', '/bots/pga/start')).status).toBe(409);
    const r = await waitFor(async () => ((await vc.req('POST', '/bots/pga/start')).status === 201 ? true : null), { timeoutMs: 10_000, intervalMs: 100, what: 'vps after expiry' });
    expect(r).toBe(true);
    expect(taggedProcesses('pga')).toHaveLength(1);
  });

  it('SIGSTOP of a daemon: the watchdog kills its bot, the other daemon takes over, and after SIGCONT nothing comes back', async () => {
    const { laptop, lc, vc } = await pair();
    const pid = (await lc.req('POST', '/bots/pga/start')).body.pid as number;
    laptop.child.kill('SIGSTOP');
    const watch = watchAccount('pga');
    try {
      await waitFor(async () => (await vc.req('POST', '/bots/pga/start')).status === 201, { timeoutMs: 12_000, intervalMs: 100, what: 'vps taking over from a frozen laptop' });
      expect(isAlive(pid, null)).toBe(false);
    } finally {
      laptop.child.kill('SIGCONT');
    }
    // Awake again, the laptop finds its lease gone: its bot fatal, and nothing started again over
    // a few of its scans (and renewals) after it says so.
    const a = await waitFor(async () => {
      const b = (await lc.req('GET', '/bots/pga')).body;
      return b.state === 'fatal' ? b : null;
    }, { timeoutMs: 10_000, what: 'the laptop telling its bot fatal' });
    expect(a.pid).toBeNull();
    await afterScans(lc, 3);
    await watch.stop();
    expect(watch.max).toBe(1);
    expect(taggedProcesses('pga')).toHaveLength(1);
    expect((await lc.req('GET', '/bots/pga')).body).toMatchObject({ state: 'fatal', pid: null });
  });
});
