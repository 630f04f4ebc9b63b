import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { SqliteLockBackend } from '../src/db/locks.js';
import { openDatabase } from '../src/db/open.js';
import { Registry } from '../src/db/registry.js';
import { isAlive, listPids, readStat, startTicksOf } from '../src/host/procfs.js';
import { ExitPoller } from '../src/host/exit-poller.js';
import { fixture, killChildren, makeConfig, startTestDaemon, sweepLeftovers, taggedProcesses, tmpDir, waitFor, type TestDaemon } from './helper.js';

const daemons: TestDaemon[] = [];
const helpers: ChildProcess[] = [];
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.close();
  await killChildren(helpers);
  expect(sweepLeftovers()).toEqual([]);
});

async function daemon(...args: Parameters<typeof startTestDaemon>) {
  const d = await startTestDaemon(...args);
  daemons.push(d);
  return d;
}

/** Writes what a previous daemon would have left: a running instance, its lock and its bot row. */
async function leaveRegistryBehind(dataDir: string, account: string, proc: { pid: number; startTicks: number }) {
  const db = openDatabase(path.join(dataDir, 'botwarden.db'));
  const reg = new Registry(db);
  const locks = new SqliteLockBackend(db);
  const at = new Date().toISOString();
  reg.createInstance({ id: 'old-instance', account, daemonId: 'dead-daemon', keyId: null, logPath: path.join(dataDir, 'x.log'), startedAt: at });
  reg.markSpawned('old-instance', proc.pid, proc.startTicks, proc.pid);
  reg.saveBot({ account, state: 'running', instanceId: 'old-instance', restarts: 0, keyId: null, lastExit: null }, at);
  const res = await locks.acquire({ account, holder: 'dead-daemon@elsewhere', brokerUsername: 'john', isStale: () => true });
  if (!res.ok) throw new Error('lock');
  await locks.attach(account, res.lock.token, { instanceId: 'old-instance', pid: proc.pid, startTicks: proc.startTicks });
  db.close();
}

function run(cmd: string, args: string[]): ChildProcess {
  const c = spawn(cmd, args, { stdio: 'ignore' });
  helpers.push(c);
  return c;
}

describe('zombies and reused pids are never taken for a bot', () => {
  it('a zombie answers kill(pid, 0) but is not alive, and is not adopted', async () => {
    // `sleep 0.05` becomes a zombie: its parent exec'd into `sleep 30`, which never reaps it.
    const parent = run('sh', ['-c', 'sleep 0.05 & exec sleep 30']);
    const zombie = await waitFor(() => listPids().map(readStat).find((s) => s && s.ppid === parent.pid && s.state === 'Z'), { what: 'zombie' });
    expect(() => process.kill(zombie.pid, 0)).not.toThrow();
    expect(isAlive(zombie.pid, zombie.startTicks)).toBe(false);

    const dataDir = tmpDir();
    await leaveRegistryBehind(dataDir, 'acct', zombie);
    const d = await daemon(makeConfig({ accounts: { acct: { command: fixture('bot.js'), restart: { policy: 'never' } } } }), { dataDir });
    expect((await d.req('GET', '/bots/acct')).body).toMatchObject({ state: 'stopped', pid: null, lock: null });
    const types = d.events.history(0, 100).map((e) => e.type);
    expect(types).toEqual(expect.arrayContaining(['bot.exited', 'lock.stale_removed']));
    expect(types).not.toContain('bot.adopted');
    expect((await d.req('POST', '/bots/acct/start')).status).toBe(201);
  });

  const canSetPid = existsSync('/proc/sys/kernel/ns_last_pid') && process.getuid?.() === 0;
  it.skipIf(!canSetPid)('a bot pid reused by another process (set with ns_last_pid) is not adopted, and that process is left alone', async () => {
    // The "bot": a process that lived and died, leaving its pid and start time in the registry; the
    // next process gets exactly that pid. Other test files fork meanwhile: one of their processes
    // can take the pid first (then a new "bot" and again).
    let oldStat: NonNullable<ReturnType<typeof readStat>> | undefined;
    let reuser: ChildProcess | undefined;
    for (let round = 0; round < 10 && (reuser === undefined || reuser.pid !== oldStat?.pid); round++) {
      const old = run('sleep', ['0.2']);
      oldStat = await waitFor(() => readStat(old.pid!));
      await new Promise((r) => old.once('exit', r));
      for (let attempt = 0; attempt < 20; attempt++) {
        if (reuser) reuser.kill('SIGKILL');
        writeFileSync('/proc/sys/kernel/ns_last_pid', String(oldStat.pid - 1));
        reuser = run('sleep', ['30']);
        if (reuser.pid === oldStat.pid) break;
      }
    }
    oldStat = oldStat!;
    expect(reuser!.pid).toBe(oldStat.pid);
    const newStat = await waitFor(() => readStat(reuser!.pid!));
    expect(newStat.startTicks).not.toBe(oldStat.startTicks);

    const dataDir = tmpDir();
    await leaveRegistryBehind(dataDir, 'acct', oldStat);
    const d = await daemon(makeConfig({ accounts: { acct: { command: fixture('bot.js'), restart: { policy: 'never' } } } }), { dataDir });
    expect((await d.req('GET', '/bots/acct')).body).toMatchObject({ state: 'stopped', pid: null, lock: null });
    expect(d.events.history(0, 100, { types: ['lock.stale_removed'] })).toHaveLength(1);
    expect(isAlive(reuser!.pid!, newStat.startTicks)).toBe(true); // not ours: untouched
  });

  it('the periodic sweep removes a stale lock during operation (dead pid, reused pid)', async () => {
    const d = await daemon(makeConfig({ daemon: { scanIntervalMs: 100 }, accounts: { a: { command: fixture('bot.js') }, b: { command: fixture('bot.js') } } }));
    const gone = run('sleep', ['0.05']);
    const goneStat = await waitFor(() => readStat(gone.pid!));
    await new Promise((r) => gone.once('exit', r));
    const other = run('sleep', ['30']);
    const otherStat = await waitFor(() => readStat(other.pid!));
    const locks = new SqliteLockBackend(d.db);
    for (const [account, pid, startTicks] of [['a', goneStat.pid, goneStat.startTicks], ['b', otherStat.pid, otherStat.startTicks + 1]] as const) {
      const res = await locks.acquire({ account, holder: 'ghost@host', brokerUsername: '', isStale: () => true });
      if (!res.ok) throw new Error('lock');
      await locks.attach(account, res.lock.token, { instanceId: 'ghost', pid, startTicks });
    }
    await waitFor(() => d.events.history(0, 100, { types: ['lock.stale_removed'] }).length === 2, { what: 'both swept', timeoutMs: 2000 });
    expect(await locks.list()).toEqual([]);
    expect(isAlive(other.pid!, otherStat.startTicks)).toBe(true);
  });
});

describe('bots that died while no daemon ran', () => {
  it('get their lock removed and their restart policy applied', async () => {
    const dataDir = tmpDir();
    const cfg = makeConfig({ accounts: { a: { command: fixture('bot.js'), startMs: 100, restart: { policy: 'on-failure', backoffMs: 1000 } } } });
    const d1 = await daemon(cfg, { dataDir });
    const first = (await d1.req('POST', '/bots/a/start')).body;
    await d1.shutdown('leave-running'); // the registry still says running
    daemons.splice(daemons.indexOf(d1), 1);
    process.kill(first.pid, 'SIGKILL');
    await waitFor(() => !isAlive(first.pid, null));

    const clock = new ManualClock();
    const d2 = await daemon(cfg, { dataDir, clock });
    const b = (await d2.req('GET', '/bots/a')).body;
    expect(b).toMatchObject({ state: 'backoff', pid: null, lastExit: { code: null, signal: null } });
    expect(d2.events.history(0, 100, { types: ['lock.stale_removed'] }).map((e) => e.pid)).toEqual([first.pid]);
    clock.advance(1000);
    const restarted = await waitFor(async () => {
      const x = (await d2.req('GET', '/bots/a')).body;
      return x.state === 'starting' ? x : null;
    });
    expect(restarted.pid).not.toBe(first.pid);
    expect(taggedProcesses('a')).toEqual([restarted.pid]);
  });

  it('an adopted bot that exits later is noticed (identity poll) and its restart policy applied', async () => {
    const dataDir = tmpDir();
    const cfg = makeConfig({ accounts: { a: { command: fixture('bot.js'), startMs: 100, restart: { policy: 'never' } } } });
    const d1 = await daemon(cfg, { dataDir });
    const first = (await d1.req('POST', '/bots/a/start')).body;
    await d1.shutdown('leave-running');
    daemons.splice(daemons.indexOf(d1), 1);
    const d2 = await daemon(cfg, { dataDir });
    expect((await d2.req('GET', '/bots/a')).body).toMatchObject({ state: 'running', pid: first.pid });
    process.kill(first.pid, 'SIGKILL');
    const after = await waitFor(async () => {
      const x = (await d2.req('GET', '/bots/a')).body;
      return x.state !== 'running' ? x : null;
    }, { what: 'exit noticed' });
    // Not our child: its exit status went to init, so it is honestly unknown.
    expect(after).toMatchObject({ state: 'stopped', pid: null, lock: null, lastExit: { code: null, signal: null } });
  });
});

describe('exit poll of adopted bots', () => {
  it('polls every 250 ms, and every 10 ms for a bot being stopped (a stop does not wait out the slow poll)', async () => {
    const clock = new ManualClock();
    const poller = new ExitPoller(clock);
    const spawnSleeper = () => {
      const c = spawn('sleep', ['30'], { stdio: 'ignore' });
      return { c, gone: new Promise<void>((r) => c.once('exit', () => r())) };
    };
    const slow = spawnSleeper();
    const fast = spawnSleeper();
    let slowDone = false;
    let fastDone = false;
    void poller.watch(slow.c.pid!, startTicksOf(slow.c.pid!)).then(() => (slowDone = true));
    void poller.watch(fast.c.pid!, startTicksOf(fast.c.pid!)).then(() => (fastDone = true));
    poller.hurry(fast.c.pid!);
    slow.c.kill('SIGKILL');
    fast.c.kill('SIGKILL');
    await Promise.all([slow.gone, fast.gone]); // reaped: /proc says gone
    for (let t = 0; t < 20; t += 10) clock.advance(10);
    await new Promise((r) => setImmediate(r));
    expect(fastDone).toBe(true);
    expect(slowDone).toBe(false);
    clock.advance(230);
    await new Promise((r) => setImmediate(r));
    expect(slowDone).toBe(true);
    poller.close();
  });

  it('once closed (its daemon stopped), it watches nothing more: no poll runs against a closed database', async () => {
    const clock = new ManualClock();
    let found = 0;
    const poller = new ExitPoller(clock, 250, () => found++);
    poller.close();
    const c = spawn('sleep', ['30'], { stdio: 'ignore' });
    const gone = new Promise<void>((r) => c.once('exit', () => r()));
    let resolved = false;
    void poller.watch(c.pid!, startTicksOf(c.pid!)).then(() => (resolved = true));
    c.kill('SIGKILL');
    await gone;
    clock.advance(1000);
    await new Promise((r) => setImmediate(r));
    expect([found, resolved]).toEqual([0, false]);
  });
});
