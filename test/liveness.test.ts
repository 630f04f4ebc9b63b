/**
 * SPEC 16: a bot alive but stuck, growing, or due for its scheduled restart; pre-stop hooks.
 * Real bots (node, and python3 for sd_notify), a real HTTP probe target on 127.0.0.1:0, real
 * files; only the schedule's time is driven (ManualClock).
 */
import { existsSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { fixture, FIXTURES, makeConfig, startTestDaemon, sweepLeftovers, taggedProcesses, tmpDir, waitFor, type TestDaemon } from './helper.js';
import { connectTo, killDaemons, spawnDaemon, writeConfig } from './proc-helper.js';

const daemons: TestDaemon[] = [];
const servers: http.Server[] = [];
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.close();
  killDaemons();
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
  await waitFor(() => taggedProcesses().length === 0, { timeoutMs: 3000, what: 'bots gone' }).catch(() => undefined);
  expect(sweepLeftovers()).toEqual([]);
});

async function daemon(accounts: Record<string, Record<string, unknown>>, opts: Parameters<typeof startTestDaemon>[1] = {}): Promise<TestDaemon> {
  const d = await startTestDaemon(makeConfig({ accounts }), opts);
  daemons.push(d);
  return d;
}

const events = (d: TestDaemon, types: string[], account?: string) => d.events.history(0, 10_000, { types, ...(account ? { account } : {}) }) as Record<string, any>[];

async function newPid(d: TestDaemon, account: string, old: number, timeoutMs = 8000): Promise<number> {
  return waitFor(async () => {
    const b = (await d.req('GET', `/bots/${account}`)).body;
    return b.pid && b.pid !== old ? (b.pid as number) : null;
  }, { timeoutMs, what: `${account} restarted` });
}

const quiet = { command: fixture('bot.js'), startMs: 100, env: { BOT_TICK_MS: '100000' }, stop: { graceMs: 500 } };

describe('liveness', () => {
  it('silence: a bot that stops printing is unresponsive after silenceMs (not during its grace), restarted, and fatal once restarts run out', async () => {
    const d = await daemon({ lvs: { ...quiet, restart: { maxRestarts: 1 }, liveness: { graceMs: 300, silenceMs: 600, action: 'restart' } } });
    const s = await d.req('POST', '/bots/lvs/start');
    const t0 = Date.now();
    const second = await newPid(d, 'lvs', s.body.pid as number);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(600);
    const un = events(d, ['bot.unresponsive'], 'lvs');
    expect(un[0]).toMatchObject({ check: 'silence', action: 'restart', pid: s.body.pid });
    expect(events(d, ['bot.stopping'], 'lvs')[0]).toMatchObject({ reason: 'unresponsive' });
    // The second instance is silent too: past maxRestarts (1) it goes fatal instead of looping.
    const fatal = await waitFor(async () => {
      const b = (await d.req('GET', '/bots/lvs')).body;
      return b.state === 'fatal' ? b : null;
    }, { timeoutMs: 8000, what: 'lvs fatal' });
    expect(fatal.lastExit).toMatchObject({ cause: 'stopped', reason: 'unresponsive' });
    expect(events(d, ['bot.fatal'], 'lvs').at(-1)).toMatchObject({ reason: 'unresponsive' });
    expect(second).not.toBe(s.body.pid);
  });

  it('a bot whose event loop blocks goes silent: unresponsive with action alert, which leaves it running', async () => {
    const d = await daemon({
      lvb: { command: ['node', '-e', "console.log('up'); setTimeout(() => { for (;;) {} }, 200)"], startMs: 100, liveness: { graceMs: 100, silenceMs: 700, action: 'alert' } },
    });
    const s = await d.req('POST', '/bots/lvb/start');
    const un = await waitFor(() => events(d, ['bot.unresponsive'], 'lvb')[0], { timeoutMs: 5000, what: 'unresponsive' });
    expect(un).toMatchObject({ check: 'silence', action: 'alert' });
    await new Promise((r) => setTimeout(r, 300));
    expect((await d.req('GET', '/bots/lvb')).body).toMatchObject({ state: 'running', pid: s.body.pid });
  });

  it('http: a real probe target that starts failing is `failures` misses away from a restart', async () => {
    let healthy = true;
    const server = http.createServer((_req, res) => {
      res.statusCode = healthy ? 200 : 503;
      res.end(healthy ? 'ok' : 'down');
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/api/v1/ping`;
    const d = await daemon({ lvh: { ...quiet, liveness: { graceMs: 100, http: { url, intervalMs: 100, timeoutMs: 500, failures: 3 }, action: 'restart' } } });
    const s = await d.req('POST', '/bots/lvh/start');
    await new Promise((r) => setTimeout(r, 600));
    expect(events(d, ['bot.unresponsive'], 'lvh')).toEqual([]);
    healthy = false;
    await newPid(d, 'lvh', s.body.pid as number);
    expect(events(d, ['bot.unresponsive'], 'lvh')[0]).toMatchObject({ check: 'http', action: 'restart' });
    expect(events(d, ['bot.unresponsive'], 'lvh')[0]!.lastSeen).not.toBeNull();
  });

  it('heartbeat file: fresh keeps it, stale makes it unresponsive', async () => {
    const dir = tmpDir();
    const hb = path.join(dir, 'hb');
    writeFileSync(hb, '');
    const d = await daemon({ lvf: { ...quiet, cwd: dir, liveness: { graceMs: 100, heartbeatFile: 'hb', staleMs: 500, action: 'alert' } } });
    await d.req('POST', '/bots/lvf/start');
    const until = Date.now() + 900;
    while (Date.now() < until) {
      utimesSync(hb, new Date(), new Date());
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(events(d, ['bot.unresponsive'], 'lvf')).toEqual([]);
    const un = await waitFor(() => events(d, ['bot.unresponsive'], 'lvf')[0], { timeoutMs: 3000, what: 'stale heartbeat' });
    expect(un).toMatchObject({ check: 'heartbeat-file' });
  });

  it("sd_notify: freqtrade's own messages from a python bot: running on READY=1 (not startMs), STATUS shown, restarted when WATCHDOG=1 stops", async () => {
    const d = await daemon({
      lvn: {
        command: ['python3', path.join(FIXTURES, 'notify-bot.py')],
        startMs: 60_000, // never the reason it runs: READY=1 is
        env: { NB_READY_AFTER: '0.4', NB_BEATS: '10' },
        stop: { graceMs: 300 },
        liveness: { graceMs: 5000, notify: true, watchdogMs: 500, action: 'restart' },
      },
    });
    const s = await d.req('POST', '/bots/lvn/start');
    expect(s.body.state).toBe('starting');
    await waitFor(async () => (await d.req('GET', '/bots/lvn')).body.state === 'running', { timeoutMs: 5000, what: 'running on READY=1' });
    // STATUS= comes in the datagram after READY=1: a request can fall between the two.
    await waitFor(async () => (await d.req('GET', '/bots/lvn')).body.status === 'State: RUNNING.', { timeoutMs: 2000, what: 'its STATUS= shown' });
    expect(readFileSync(path.join(d.dataDir, 'logs', 'lvn.log'), 'utf8')).toContain('usec=500000');
    await newPid(d, 'lvn', s.body.pid as number);
    expect(events(d, ['bot.unresponsive'], 'lvn')[0]).toMatchObject({ check: 'watchdog', action: 'restart' });
  });
});

describe('liveness across a daemon restart', () => {
  it('an adopted sd_notify bot is not taken for a bot that never said READY=1: it keeps running, its WATCHDOG=1 reaches the new daemon', async () => {
    const dir = tmpDir();
    // The first daemon gives python a grace its start fits in on a loaded machine (its READY=1
    // comes 0.1 s after it is up); the daemon that adopts the bot has the short one.
    const config = (graceMs: number) =>
      writeConfig(dir, {
        accounts: {
          lvad: {
            command: ['python3', path.join(FIXTURES, 'notify-bot.py')],
            startMs: 60_000,
            env: { NB_READY_AFTER: '0.1' },
            stop: { graceMs: 300 },
            liveness: { graceMs, notify: true, watchdogMs: 500, action: 'restart' },
          },
        },
      });
    const file = config(2000);
    const d1 = spawnDaemon(dir, file);
    let c = await connectTo(dir, d1.pid);
    expect((await c.req('POST', '/bots/lvad/start')).status).toBe(201);
    // The bot the next daemon adopts is the one running now.
    const up = await waitFor(async () => {
      const b = (await c.req('GET', '/bots/lvad')).body;
      return b.state === 'running' ? b : null;
    }, { timeoutMs: 10_000, what: 'running on READY=1' });
    const s = { body: { pid: up.pid as number } };
    d1.child.kill('SIGKILL');
    await d1.exited;
    config(300);
    const d2 = spawnDaemon(dir, file);
    c = await connectTo(dir, d2.pid);
    // Past the grace and two watchdog periods: still the same process, never restarted.
    await new Promise((r) => setTimeout(r, 2500));
    const b = (await c.req('GET', '/bots/lvad')).body;
    const story = (await c.req('GET', '/events/history?types=bot.,daemon.&limit=100')).body;
    expect(b, JSON.stringify({ bot: b, events: story })).toMatchObject({ state: 'running', pid: s.body.pid });
    expect(b.status).toBe('State: RUNNING.');
    await c.req('POST', '/bots/lvad/stop');
    d2.child.kill('SIGTERM');
    await d2.exited;
  }, 20_000);
});

describe('limits', () => {
  it('a bot that allocates past memoryMB for forMs is restarted (bot.limit_exceeded), and rssBytes/cpuPercent are shown', async () => {
    const grow = "const a=[]; console.log('up'); setInterval(() => { if (a.length < 60) a.push(Buffer.alloc(4e6, 1)); }, 20)";
    const d = await daemon({ lvm: { command: ['node', '-e', grow], startMs: 100, stop: { graceMs: 300 }, limits: { memoryMB: 120, forMs: 300, action: 'restart' } } });
    const s = await d.req('POST', '/bots/lvm/start');
    const seen = await waitFor(async () => {
      const b = (await d.req('GET', '/bots/lvm')).body;
      return b.rssBytes !== null && b.cpuPercent !== null ? b : null;
    }, { timeoutMs: 5000, what: 'a resource sample' });
    expect(seen.rssBytes).toBeGreaterThan(10 * 1024 * 1024);
    await newPid(d, 'lvm', s.body.pid as number, 10_000);
    const ev = events(d, ['bot.limit_exceeded'], 'lvm')[0]!;
    expect(ev).toMatchObject({ limit: 'memory', action: 'restart' });
    expect(ev.value).toBeGreaterThan(120 * 1024 * 1024);
    expect(events(d, ['bot.stopping'], 'lvm')[0]).toMatchObject({ reason: 'limit' });
  });
});

describe('scheduled restarts', () => {
  it('restart.schedule on the injected clock: the running bot is restarted at 04:00 through the gate; nothing before', async () => {
    const clock = new ManualClock(new Date(2026, 10, 23, 3, 59, 0).getTime()); // local time, like cron
    const d = await daemon({ lvc: { command: fixture('bot.js'), startMs: 100, stop: { graceMs: 2000 }, restart: { schedule: '0 4 * * *', jitterMs: 0 } } }, { clock });
    const s = await d.req('POST', '/bots/lvc/start');
    await clock.run(200);
    expect((await d.req('GET', '/bots/lvc')).body.state).toBe('running');
    await clock.run(58_000);
    expect((await d.req('GET', '/bots/lvc')).body.pid).toBe(s.body.pid);
    // 04:00 comes.
    const until = Date.now() + 8000;
    let pid = s.body.pid as number;
    while (pid === s.body.pid && Date.now() < until) {
      await clock.run(100);
      pid = (await d.req('GET', '/bots/lvc')).body.pid ?? pid;
    }
    expect(pid).not.toBe(s.body.pid);
    expect(events(d, ['bot.stopping'], 'lvc')[0]).toMatchObject({ reason: 'schedule' });
  });
});

describe('pre-stop hooks', () => {
  it("runs before the stop signal (its time is before the bot's SIGTERM), its output in the bot's log, bot.prestop ok", async () => {
    const dir = tmpDir();
    const hookFile = path.join(dir, 'hook');
    const termFile = path.join(dir, 'term');
    const bot = "process.on('SIGTERM', () => { require('fs').writeFileSync(process.env.TERM_FILE, String(Date.now())); process.exit(0); }); console.log('up'); setInterval(() => {}, 1000)";
    const hook = "setTimeout(() => { require('fs').writeFileSync(process.env.HOOK_FILE, String(Date.now())); console.log('stopentry sent'); }, 200)";
    const d = await daemon({
      lvp: { command: ['node', '-e', bot], startMs: 100, env: { HOOK_FILE: hookFile, TERM_FILE: termFile }, stop: { graceMs: 2000, before: { command: ['node', '-e', hook], timeoutMs: 3000 } } },
    });
    await d.req('POST', '/bots/lvp/start');
    await waitFor(() => readFileSync(path.join(d.dataDir, 'logs', 'lvp.log'), 'utf8').includes('up'), { what: 'up' });
    expect((await d.req('POST', '/bots/lvp/stop')).status).toBe(200);
    const hookAt = Number(readFileSync(hookFile, 'utf8'));
    const termAt = Number(readFileSync(termFile, 'utf8'));
    expect(hookAt).toBeLessThanOrEqual(termAt);
    expect(readFileSync(path.join(d.dataDir, 'logs', 'lvp.log'), 'utf8')).toContain('stopentry sent');
    expect(events(d, ['bot.prestop'], 'lvp')[0]).toMatchObject({ ok: true, reason: 'request' });
  });

  it('a hook that hangs never delays the stop past its timeoutMs; it is killed; a forced stop skips it', async () => {
    const d = await daemon({
      lvq: { command: fixture('bot.js'), startMs: 100, stop: { graceMs: 2000, before: { command: ['node', '-e', 'setInterval(() => {}, 1000)'], timeoutMs: 400 } } },
    });
    await d.req('POST', '/bots/lvq/start');
    const t0 = performance.now();
    expect((await d.req('POST', '/bots/lvq/stop')).status).toBe(200);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(events(d, ['bot.prestop'], 'lvq')[0]).toMatchObject({ ok: false, detail: 'timeout' });
    await d.req('POST', '/bots/lvq/start');
    expect((await d.req('POST', '/bots/lvq/stop', { body: { force: true } })).status).toBe(200);
    expect(events(d, ['bot.prestop'], 'lvq')).toHaveLength(1);
    expect(existsSync(d.dataDir)).toBe(true);
  });
});
