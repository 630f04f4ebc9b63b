import WebSocket from 'ws';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, statSync, watch } from 'node:fs';
import path from 'node:path';
import { acquireDaemonLock, DataDirBusyError } from '../src/db/daemon-lock.js';
import { isAlive } from '../src/host/procfs.js';
import { fixture, FIXTURES, sweepLeftovers, tmpDir, waitFor } from './helper.js';
import { CLI, connectTo, killDaemons, spawnDaemon, writeConfig } from './proc-helper.js';

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error('dist/cli.js is missing: run `npm run build` (npm test does)');
});
afterEach(() => {
  killDaemons();
  expect(sweepLeftovers()).toEqual([]);
});

const accounts = { a: { command: fixture('bot.js'), startMs: 100, stop: { graceMs: 3000 } } };

describe('the daemon process', () => {
  it('refuses a second daemon on the same data dir at once, and lets a new one in at once after SIGKILL', async () => {
    const dir = tmpDir();
    const cfg = writeConfig(dir, { accounts });
    const first = spawnDaemon(dir, cfg);
    await connectTo(dir, first.pid);
    expect((statSync(`${dir}/api-token`).mode & 0o777).toString(8)).toBe('600');

    const second = spawnDaemon(dir, cfg);
    const exit = await second.exited;
    expect(exit.code).not.toBe(0);
    expect(second.stderr()).toContain(`already owns the data dir ${dir}`);
    // Refused at once, not after SQLite's 5 s busy wait: timed on the lock itself, as the second
    // daemon takes it (a process's time is mostly Node start-up, seconds on a loaded machine).
    const t0 = performance.now();
    expect(() => acquireDaemonLock(dir)).toThrow(DataDirBusyError);
    expect(performance.now() - t0).toBeLessThan(2500);

    first.child.kill('SIGKILL');
    await first.exited;
    const third = spawnDaemon(dir, cfg);
    const c = await connectTo(dir, third.pid);
    expect((await c.req('GET', '/bots')).status).toBe(200);
  });

  it('SIGTERM stops every bot gracefully and exits 0', async () => {
    const dir = tmpDir();
    const d = spawnDaemon(dir, writeConfig(dir, { accounts: { ...accounts, b: accounts.a } }));
    const c = await connectTo(dir, d.pid);
    const pids = [(await c.req('POST', '/bots/a/start')).body.pid, (await c.req('POST', '/bots/b/start')).body.pid] as number[];
    await waitFor(async () => (await c.req('GET', '/bots/b')).body.state === 'running');
    d.child.kill('SIGTERM');
    expect(await d.exited).toEqual({ code: 0, signal: null });
    for (const pid of pids) expect(isAlive(pid, null)).toBe(false);
  });

  it('its address file appears only once its signal handlers are in place: a SIGTERM sent the instant it appears is a clean stop', async () => {
    const dir = tmpDir();
    const cfg = writeConfig(dir, { accounts });
    // Watch the data dir itself (created by the daemon, so wait for it), then react to the file at once.
    const d = spawnDaemon(dir, cfg);
    const seen = new Promise<void>((resolve) => {
      const w = watch(dir, (_e, name) => {
        if (name === 'daemon.json' && existsSync(path.join(dir, 'daemon.json'))) {
          w.close();
          d.child.kill('SIGTERM');
          resolve();
        }
      });
    });
    await seen;
    expect(await d.exited).toEqual({ code: 0, signal: null });
  });

  it('--leave-running: SIGTERM exits 0, bots keep running, and the next daemon adopts them (same pid, running, locked)', async () => {
    const dir = tmpDir();
    const cfg = writeConfig(dir, { accounts });
    const d = spawnDaemon(dir, cfg, ['--leave-running']);
    const c = await connectTo(dir, d.pid);
    const bot = (await c.req('POST', '/bots/a/start')).body;
    d.child.kill('SIGTERM');
    expect((await d.exited).code).toBe(0);
    expect(isAlive(bot.pid, null)).toBe(true);

    const d2 = spawnDaemon(dir, cfg);
    const c2 = await connectTo(dir, d2.pid);
    const adopted = (await c2.req('GET', '/bots/a')).body;
    expect(adopted).toMatchObject({ state: 'running', pid: bot.pid, instanceId: bot.instanceId });
    expect(adopted.lock.pid).toBe(bot.pid);
    const again = await c2.req('POST', '/bots/a/start');
    expect(again.status).toBe(409);
    expect(again.body.code).toBe('ACCOUNT_LOCKED');
    const stopped = await c2.req('POST', '/bots/a/stop');
    expect(stopped.body).toMatchObject({ state: 'stopped', lock: null });
    expect(isAlive(bot.pid, null)).toBe(false);
  });

  it('a SIGKILLed daemon leaves its bots running; the next one adopts the live and buries the dead', async () => {
    const dir = tmpDir();
    const cfg = writeConfig(dir, {
      accounts: { ...accounts, dead: { ...accounts.a, restart: { policy: 'never' } } },
    });
    const d = spawnDaemon(dir, cfg);
    const c = await connectTo(dir, d.pid);
    const live = (await c.req('POST', '/bots/a/start')).body;
    const dead = (await c.req('POST', '/bots/dead/start')).body;
    d.child.kill('SIGKILL');
    await d.exited;
    expect(isAlive(live.pid, null)).toBe(true);
    process.kill(dead.pid, 'SIGKILL'); // dies while no daemon runs
    await waitFor(() => !isAlive(dead.pid, null));

    const d2 = spawnDaemon(dir, cfg);
    const c2 = await connectTo(dir, d2.pid);
    expect((await c2.req('GET', '/bots/a')).body).toMatchObject({ state: 'running', pid: live.pid });
    const deadView = (await c2.req('GET', '/bots/dead')).body;
    expect(deadView).toMatchObject({ state: 'stopped', pid: null, lock: null });
    const history = (await c2.req('GET', '/events/history?types=lock.stale_removed,bot.adopted')).body.events;
    expect(history.map((e: { type: string; account: string }) => `${e.type} ${e.account}`)).toEqual(
      expect.arrayContaining(['bot.adopted a', 'lock.stale_removed dead']),
    );
    // The dead account can start again.
    expect((await c2.req('POST', '/bots/dead/start')).status).toBe(201);
    d2.child.kill('SIGTERM');
    expect((await d2.exited).code).toBe(0);
  });

  it('refuses an invalid config at start, listing every problem with its path', async () => {
    const dir = tmpDir();
    const cfg = writeConfig(dir, {
      daemon: { scanIntervalMs: 'often' },
      accounts: { 'bad id!': { command: [] }, ok: { command: ['node'], startMs: -5, duplicates: 'maybe', match: '([' } },
    });
    const d = spawnDaemon(dir, cfg);
    const exit = await d.exited;
    expect(exit.code).toBe(2);
    const err = d.stderr();
    expect(err).toContain(cfg);
    for (const p of ['/daemon/scanIntervalMs', "/accounts/bad id!", '/accounts/ok/startMs', '/accounts/ok/duplicates']) expect(err).toContain(p);
  });
});

describe('the built daemon (dist/cli.js, bundled by scripts/build.mjs)', () => {
  it('serves every surface from its bundle: the API, OpenAPI, metrics, the dashboard, the event websocket, and an sd_notify bot (a native module)', async () => {
    const dir = tmpDir();
    const cfg = writeConfig(dir, {
      accounts: {
        web: {
          command: ['python3', path.join(FIXTURES, 'notify-bot.py')],
          startMs: 60_000, // it runs on READY=1, through the notify socket
          env: { NB_READY_AFTER: '0.2' },
          stop: { graceMs: 1000 },
          liveness: { graceMs: 5000, notify: true, watchdogMs: 2000, action: 'restart' },
        },
      },
    });
    const d = spawnDaemon(dir, cfg);
    const c = await connectTo(dir, d.pid);
    const token = readFileSync(path.join(dir, 'api-token'), 'utf8').trim();

    const events: { type: string }[] = [];
    const ws = new WebSocket(`${c.url.replace('http', 'ws')}/events`, { headers: { authorization: `Bearer ${token}` } });
    ws.on('message', (m: Buffer) => events.push(JSON.parse(m.toString()) as { type: string }));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });

    expect((await c.req('POST', '/bots/web/start')).status).toBe(201);
    await waitFor(async () => (await c.req('GET', '/bots/web')).body.state === 'running', { timeoutMs: 15_000, what: 'READY=1 over the notify socket' });
    await waitFor(() => events.some((e) => e.type === 'bot.running'), { what: 'bot.running on the websocket' });

    const openapi = await c.req('GET', '/openapi.json');
    expect(openapi.status).toBe(200);
    expect(Object.keys(openapi.body.paths as object)).toContain('/bots/{account}/start');
    const metrics = await fetch(`${c.url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toMatch(/^botwarden_bot_up\{account="web"\} 1$/m);
    const page = await fetch(`${c.url}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<html');

    ws.close();
    d.child.kill('SIGTERM');
    expect(await d.exited).toEqual({ code: 0, signal: null });
  });
});
