/**
 * SPEC 14, the promise under faults: each case a tester broke by hand (issue 19), as a test that
 * fails without its fix. Real daemons (in-process or as processes), real bots, real /proc.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { isAlive, readEnviron, readStat } from '../src/host/procfs.js';
import { fixture, FIXTURES, killChildren, makeConfig, ROOT, startTestDaemon, sweepLeftovers, taggedProcesses, TEST_TAG, tmpDir, waitFor, type TestDaemon } from './helper.js';
import { connectTo, killDaemons, spawnDaemon, writeConfig } from './proc-helper.js';

const daemons: TestDaemon[] = [];
const children: ChildProcess[] = [];
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.close();
  killDaemons();
  await killChildren(children);
  expect(sweepLeftovers()).toEqual([]);
});

const SECRETS = { FK_KEY_1: 'fk-pub-1111-alpha', FK_SECRET_1: 'fk-sec-1111-alpha' };
const keys = { k1: { keyEnv: 'FK_KEY_1', secretEnv: 'FK_SECRET_1' } };
const pool = { pool: ['k1'], envKey: 'EXCHANGE_KEY', envSecret: 'EXCHANGE_SECRET' };

async function daemon(cfg: Parameters<typeof makeConfig>[0]): Promise<TestDaemon> {
  const d = await startTestDaemon(makeConfig(cfg), { env: { ...process.env, ...SECRETS, BOTWARDEN_TOKEN: undefined } });
  daemons.push(d);
  return d;
}

/** Stored events of a type, read straight from a data dir's database (what survives a SIGKILL). */
function events(dataDir: string, type: string): Record<string, unknown>[] {
  const db = new Database(path.join(dataDir, 'botwarden.db'), { readonly: true });
  try {
    return (db.prepare('SELECT data FROM events WHERE type = ?').all(type) as { data: string }[]).map((r) => JSON.parse(r.data) as Record<string, unknown>);
  } finally {
    db.close();
  }
}

function history(d: TestDaemon, types: string[]): { type: string; reason?: string; pids?: number[]; pid?: number }[] {
  return d.events.history(0, 10_000, { types });
}

describe('1. an account that left the config keeps its bot visible, stoppable, and its lock and key', () => {
  it('a reload that drops a running account is 409 ACCOUNT_RUNNING; after a daemon SIGKILL on such a file the bot is configured:false, keeps k1, and a stop frees it', async () => {
    const dir = tmpDir();
    const both = { keys, accounts: { xss: { command: fixture('bot.js'), startMs: 100, keys: pool }, kshare: { command: fixture('bot.js'), startMs: 100, keys: pool } } };
    const file = writeConfig(dir, both);
    const env = { ...SECRETS };
    const d1 = spawnDaemon(dir, file, [], env);
    let c = await connectTo(dir, d1.pid);
    const xss = await c.req('POST', '/bots/xss/start');
    expect(xss.status).toBe(201);
    expect((await c.req('POST', '/bots/kshare/start')).body.code).toBe('NO_FREE_KEY');

    // Dropping xss while it runs: refused, nothing changed.
    writeConfig(dir, { keys, accounts: { kshare: both.accounts.kshare } });
    const reload = await c.req('POST', '/config/reload');
    expect(reload.status).toBe(409);
    expect(reload.body).toMatchObject({ code: 'ACCOUNT_RUNNING', accounts: ['xss'] });
    expect(reload.body.message).toContain("'xss'");
    expect((await c.req('GET', '/bots/xss')).body).toMatchObject({ state: expect.stringMatching(/^(starting|running)$/), configured: true, pid: xss.body.pid });

    // The daemon dies and comes back on the file without xss.
    d1.child.kill('SIGKILL');
    await d1.exited;
    const d2 = spawnDaemon(dir, file, [], env);
    c = await connectTo(dir, d2.pid);
    const listed = (await c.req('GET', '/bots')).body.bots as { account: string; configured: boolean; state: string; pid: number; keyId: string }[];
    expect(listed.find((b) => b.account === 'xss')).toMatchObject({ configured: false, state: 'running', pid: xss.body.pid, keyId: 'k1' });
    expect(isAlive(xss.body.pid, null)).toBe(true);
    expect((await c.req('POST', '/bots/kshare/start')).body.code).toBe('NO_FREE_KEY');
    expect((await c.req('POST', '/bots/xss/start')).body.code).toBe('UNKNOWN_ACCOUNT'); // never started again
    expect(events(dir, 'lock.stale_removed')).toEqual([]);

    // Stoppable; once its tree is gone, its key is free and it leaves /bots.
    const stopped = await c.req('POST', '/bots/xss/stop', { graceMs: 2000 });
    expect(stopped.status).toBe(200);
    expect(isAlive(xss.body.pid, null)).toBe(false);
    expect((await c.req('GET', '/bots')).body.bots.map((b: { account: string }) => b.account)).toEqual(['kshare']);
    const k = await c.req('POST', '/bots/kshare/start');
    expect(k.status).toBe(201);
    expect(readEnviron(k.body.pid)!.get('EXCHANGE_KEY')).toBe(SECRETS.FK_KEY_1);
    await c.req('POST', '/bots/kshare/stop');
    d2.child.kill('SIGTERM');
    await d2.exited;
  }, 30_000);
});

describe('2. a dead leader whose worker lives', () => {
  for (const mode of ['kill', 'report'] as const) {
    it(`(${mode}) the old worker is stopped before the new bot exists: never both alive`, async () => {
      const dir = tmpDir();
      const file = writeConfig(dir, {
        accounts: { wk: { command: fixture('grandchild.js'), startMs: 100, duplicates: mode, stop: { graceMs: 300 }, restart: { policy: 'always', backoffMs: 0 } } },
      });
      const d1 = spawnDaemon(dir, file);
      let c = await connectTo(dir, d1.pid);
      const started = await c.req('POST', '/bots/wk/start');
      expect(started.status).toBe(201);
      const leader = started.body.pid as number;
      const worker = await waitFor(() => /grandchild=(\d+)/.exec(readFileSync(path.join(dir, 'logs', 'wk.log'), 'utf8'))?.[1], { what: 'worker pid' });
      const workerPid = Number(worker);
      const workerTicks = readStat(workerPid)!.startTicks;
      d1.child.kill('SIGKILL');
      await d1.exited;
      process.kill(leader, 'SIGKILL');
      await waitFor(() => !isAlive(leader, null), { what: 'leader gone' });
      expect(isAlive(workerPid, workerTicks)).toBe(true);

      // Watch /proc every few ms while the new daemon boots: the new bot and the old worker never overlap.
      let overlap = false;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          const workerAlive = isAlive(workerPid, workerTicks);
          const bots = taggedProcesses('wk').filter((p) => p !== workerPid && p !== leader);
          if (workerAlive && bots.length > 0) overlap = true;
          await new Promise((r) => setTimeout(r, 2));
        }
      })();
      const d2 = spawnDaemon(dir, file);
      c = await connectTo(dir, d2.pid).catch((err: unknown) => {
        throw new Error(`${(err as Error).message}: ${d2.stderr()}`);
      });
      const next = await waitFor(async () => {
        const b = (await c.req('GET', '/bots/wk')).body;
        return b.pid && b.pid !== leader ? b : null;
      }, { what: 'wk restarted', timeoutMs: 10_000 });
      sampling = false;
      await sampler;
      expect(overlap).toBe(false);
      expect(isAlive(workerPid, workerTicks)).toBe(false);
      expect(next.state === 'starting' || next.state === 'running').toBe(true);
      await c.req('POST', '/bots/wk/stop');
      d2.child.kill('SIGTERM');
      await d2.exited;
    }, 30_000);
  }
});

describe('3. automatic restarts pass the start gate', () => {
  it('report mode, a hand-started copy alive, the managed bot killed: no restart spawns; backoff naming the copy, then fatal duplicate', async () => {
    const d = await daemon({
      accounts: { gate: { command: fixture('bot.js', ['--gate-bot']), match: '--gate-bot', duplicates: 'report', startMs: 100, restart: { policy: 'always', maxRestarts: 2, backoffMs: 50, maxBackoffMs: 100 } } },
    });
    const started = await d.req('POST', '/bots/gate/start');
    expect(started.status).toBe(201);
    const copy = spawn(process.execPath, [path.join(FIXTURES, 'bot.js'), '--gate-bot'], { stdio: 'ignore', env: { ...process.env, BW_TEST_TAG: TEST_TAG } });
    children.push(copy);
    await waitFor(() => readStat(copy.pid!) !== null, { what: 'copy up' });
    process.kill(started.body.pid as number, 'SIGKILL');
    const fatal = await waitFor(async () => {
      const b = (await d.req('GET', '/bots/gate')).body;
      return b.state === 'fatal' ? b : null;
    }, { what: 'gate fatal', timeoutMs: 10_000 });
    expect(fatal).toMatchObject({ pid: null, lock: null });
    const evs = history(d, ['bot.backoff', 'bot.fatal', 'bot.starting', 'duplicate.detected']);
    expect(evs.filter((e) => e.type === 'bot.starting')).toHaveLength(1); // the requested start only
    expect(evs.filter((e) => e.type === 'bot.backoff' && e.reason === 'duplicate').every((e) => e.pids?.includes(copy.pid!))).toBe(true);
    expect(evs.filter((e) => e.type === 'bot.backoff' && e.reason === 'duplicate').length).toBeGreaterThanOrEqual(2);
    expect(evs.find((e) => e.type === 'duplicate.detected')?.pid).toBe(copy.pid);
    expect(evs.at(-1)).toMatchObject({ type: 'bot.fatal', reason: 'duplicate' });
    // Only the copy runs: the gate spawned nothing.
    expect(taggedProcesses('gate')).toEqual([]);
    expect(isAlive(copy.pid!, null)).toBe(true);
  }, 20_000);
});

describe('4. an emergency stop cuts a graceful one short', () => {
  it('stop {graceMs: 20000} of a bot ignoring SIGTERM, then {force: true}: both answer at once, the bot is SIGKILLed', async () => {
    const d = await daemon({ accounts: { em: { command: fixture('no-killable.js'), startMs: 100 } } });
    const s = await d.req('POST', '/bots/em/start');
    await waitFor(() => readFileSync(path.join(d.dataDir, 'logs', 'em.log'), 'utf8').includes('ready'), { what: 'em ready' });
    const t0 = performance.now();
    const slow = d.req('POST', '/bots/em/stop', { body: { graceMs: 20_000 } });
    // The slow stop is under way: the bot got its SIGTERM and ignored it.
    await waitFor(() => readFileSync(path.join(d.dataDir, 'logs', 'em.log'), 'utf8').includes('SIGTERM ignored'), { what: 'SIGTERM ignored' });
    expect((await d.req('GET', '/bots/em')).body.state).toBe('stopping');
    expect(isAlive(s.body.pid as number, null)).toBe(true);
    const force = await d.req('POST', '/bots/em/stop', { body: { force: true } });
    const first = await slow;
    const ms = performance.now() - t0;
    expect(force.status).toBe(200);
    expect(first.status).toBe(200);
    expect(ms).toBeLessThan(10_000); // not the 20 s grace
    expect(first.body).toMatchObject({ state: 'stopped', lastExit: { forced: true } });
    expect(isAlive(s.body.pid as number, null)).toBe(false);
    // A smaller graceMs escalates the same way.
    const s2 = await d.req('POST', '/bots/em/start');
    await waitFor(() => readFileSync(path.join(d.dataDir, 'logs', 'em.log'), 'utf8').split('ready').length > 2, { what: 'em ready again' });
    const slow2 = d.req('POST', '/bots/em/stop', { body: { graceMs: 20_000 } });
    await waitFor(() => readFileSync(path.join(d.dataDir, 'logs', 'em.log'), 'utf8').split('SIGTERM ignored').length > 2, { what: 'SIGTERM ignored again' });
    expect((await d.req('GET', '/bots/em')).body.state).toBe('stopping');
    const t1 = performance.now();
    expect((await d.req('POST', '/bots/em/stop', { body: { graceMs: 100 } })).status).toBe(200);
    expect((await slow2).body.state).toBe('stopped');
    expect(performance.now() - t1).toBeLessThan(10_000); // not the 20 s grace
    expect(isAlive(s2.body.pid as number, null)).toBe(false);
    // Bad input names what was wrong and changes nothing.
    const bad = await d.req('POST', '/bots/em/stop', { body: { force: 'yes' } });
    expect(bad.status).toBe(400);
  }, 20_000);
});

describe('5. released only when gone', () => {
  it('a bot that outlives SIGKILL (held in its exit by a debugger) keeps its lock; fatal unkillable, /health failing naming it; once gone the lock goes', async () => {
    const d = await daemon({ accounts: { uk: { command: fixture('bot.js'), startMs: 100, stop: { graceMs: 100 } } } });
    const s = await d.req('POST', '/bots/uk/start');
    expect(s.status).toBe(201);
    const pid = s.body.pid as number;
    // A tracer stops the bot at its exit (PTRACE_EVENT_EXIT): SIGKILLed, it stays until the tracer
    // goes, as a process in uninterruptible sleep would.
    const tracer = spawn('python3', [path.join(FIXTURES, 'ptrace-hold.py'), String(pid)], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(tracer);
    await new Promise<void>((resolve) => tracer.stdout.once('data', () => resolve()));
    const t0 = performance.now();
    const stop = await d.req('POST', '/bots/uk/stop');
    expect(performance.now() - t0).toBeGreaterThan(5000); // SIGKILL, then 5 s of waiting for it to go
    expect(stop.status).toBe(200);
    expect(stop.body).toMatchObject({ state: 'fatal', pid: null });
    expect(stop.body.lock).toMatchObject({ pid });
    expect(isAlive(pid, null)).toBe(true);
    const health = await d.req('GET', '/health');
    expect(health.status).toBe(503);
    expect(health.body.checks.find((c: { name: string }) => c.name === 'bots')).toMatchObject({ status: 'failing', detail: expect.stringContaining(`uk pid ${pid}`) });
    expect((await d.req('POST', '/bots/uk/start')).body.code).toBe('ACCOUNT_LOCKED');
    expect(history(d, ['bot.fatal']).at(-1)?.reason).toBe('unkillable');

    await killChildren(children); // the debugger goes: the bot can die at last
    await waitFor(async () => (await d.req('GET', '/bots/uk')).body.lock === null, { what: 'lock released once the bot is gone', timeoutMs: 5000 });
    expect(isAlive(pid, null)).toBe(false);
    expect((await d.req('GET', '/health')).status).toBe(200);
    expect((await d.req('POST', '/bots/uk/start')).status).toBe(201);
  }, 30_000);

  it('a /proc read that fails for another reason than "no such process" (EMFILE) counts as alive', () => {
    const code = `
      const fs = require('node:fs');
      import(${JSON.stringify(path.join(ROOT, 'dist/host/procfs.js'))}).then((m) => {
        const held = [];
        try { for (;;) held.push(fs.openSync('/dev/null', 'r')); } catch {}
        const dead = m.isAlive(2 ** 22 + 1, null);
        for (const fd of held) fs.closeSync(fd);
        console.log(JSON.stringify({ emfile: dead, after: m.isAlive(2 ** 22 + 1, null), self: m.isAlive(process.pid, null) }));
      });`;
    const r = spawnSync('/bin/sh', ['-c', `ulimit -n 64 && exec "${process.execPath}" -e "$0"`, code], { encoding: 'utf8' });
    expect(JSON.parse(r.stdout)).toEqual({ emfile: true, after: false, self: true });
  });
});
