/**
 * The spawner: above daemon.spawnerAbove running bots, bots are forked by a small helper process
 * of the daemon (a fork of the daemon itself costs 2-3x more and blocks its event loop), their
 * exit codes come back through it, and losing it loses nothing: its bots are watched by polling
 * and the next start brings a new one. Below, the daemon forks them itself.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, expect, it } from 'vitest';
import pino from 'pino';
import { isAlive, readStat } from '../src/host/procfs.js';
import { Spawner } from '../src/host/spawner-client.js';
import { afterScans, fixture, makeConfig, removeDir, ROOT, startTestDaemon, sweepLeftovers, tmpDir, waitFor, type TestDaemon } from './helper.js';
import { connectTo, killDaemons, spawnDaemon, writeConfig } from './proc-helper.js';

let d: TestDaemon | null = null;
const dirs: string[] = [];

afterEach(async () => {
  await d?.close();
  d = null;
  killDaemons();
  expect(sweepLeftovers()).toEqual([]);
  for (const dir of dirs.splice(0)) removeDir(dir);
});

const cmdline = (pid: number): string[] => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
const parentOf = (pid: number): number => readStat(pid)!.ppid;
const isSpawner = (pid: number): boolean => cmdline(pid).some((a) => a.endsWith(`${path.sep}spawner.js`));
const gone = (pid: number) => waitFor(() => !isAlive(pid, null), { timeoutMs: 5000, what: `pid ${pid} gone` });
/**
 * bot.js takes SIGTERM as a stop (exit 0) once its handler is installed, which is after its first
 * lines; its first `tick` (BOT_TICK_MS 50) comes after that. A stop sent earlier kills it by signal.
 */
const stopsCleanly = (log: string, pid: number) =>
  waitFor(
    () => {
      const text = existsSync(log) ? readFileSync(log, 'utf8') : '';
      const at = text.indexOf(`ready pid=${pid} `);
      return at >= 0 && text.indexOf('tick', at) > at;
    },
    { timeoutMs: 10_000, what: `bot ${pid} ready for SIGTERM` },
  );

/** This process's children that are spawners (the in-process test daemon's). */
const spawnersOfThisProcess = (): number[] =>
  readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .filter((pid) => readStat(pid)?.ppid === process.pid && isSpawnerSafe(pid));
const isSpawnerSafe = (pid: number): boolean => {
  try {
    return isSpawner(pid);
  } catch {
    return false;
  }
};

it('up to daemon.spawnerAbove running forks the daemon forks bots itself (no spawner process); above, the spawner takes over and stays; exit codes come back both ways', async () => {
  const crash = (code: string) => ({ command: fixture('crash.js'), env: { CRASH_AFTER_MS: '1500', CRASH_CODE: code }, restart: { policy: 'never' }, startMs: 100 });
  d = await startTestDaemon(makeConfig({ daemon: { spawnerAbove: 2 }, accounts: { a: crash('5'), b: crash('6'), c: crash('7'), e: crash('8') } }));
  const pids: Record<string, number> = {};
  for (const a of ['a', 'b']) pids[a] = (await d.req('POST', `/bots/${a}/start`)).body.pid as number;
  expect([parentOf(pids.a!), parentOf(pids.b!)]).toEqual([process.pid, process.pid]);
  expect(spawnersOfThisProcess()).toEqual([]);
  for (const a of ['c', 'e']) pids[a] = (await d.req('POST', `/bots/${a}/start`)).body.pid as number;
  const spawner = parentOf(pids.c!);
  expect(isSpawner(spawner)).toBe(true);
  expect(parentOf(pids.e!)).toBe(spawner);
  expect(spawnersOfThisProcess()).toEqual([spawner]);
  await waitFor(async () => ((await d!.req('GET', '/bots')).body.bots as { state: string }[]).every((b) => b.state === 'fatal' || b.state === 'stopped'), { timeoutMs: 10_000, what: 'all four exited' });
  const codes = Object.fromEntries(d.events.history(undefined, 100, { types: ['bot.exited'] }).map((e) => [e.account, [e.pid, e.code]]));
  expect(codes).toEqual({ a: [pids.a, 5], b: [pids.b, 6], c: [pids.c, 7], e: [pids.e, 8] });
  // Once up, the spawner forks every bot, even with fewer running.
  const again = (await d.req('POST', '/bots/a/start')).body.pid as number;
  expect(parentOf(again)).toBe(spawner);
});

it('a bot is forked by the spawner (a child of the daemon, with none of its environment), and its exit code comes back through it', async () => {
  d = await startTestDaemon(
    makeConfig({
      daemon: { spawnerAbove: 0 },
      accounts: {
        crash: { command: fixture('crash.js'), env: { CRASH_AFTER_MS: '700', CRASH_CODE: '7' }, restart: { policy: 'never' }, startMs: 100 },
      },
    }),
  );
  const res = await d.req('POST', '/bots/crash/start');
  expect(res.status).toBe(201);
  const spawner = parentOf(res.body.pid);
  expect(spawner).not.toBe(process.pid);
  expect(isSpawner(spawner)).toBe(true);
  expect(parentOf(spawner)).toBe(process.pid);
  // The daemon's secrets never reach it: a bot's environment comes with each request.
  const environ = readFileSync(`/proc/${spawner}/environ`, 'utf8').split('\0').filter(Boolean).map((kv) => kv.slice(0, kv.indexOf('=')));
  expect(environ.filter((k) => !k.startsWith('NODE_CHANNEL_'))).toEqual([]);

  await waitFor(async () => (await d!.req('GET', '/bots/crash')).body.state === 'fatal' || (await d!.req('GET', '/bots/crash')).body.state === 'stopped', { what: 'crash exited' });
  const exited = d.events.history(undefined, 100, { types: ['bot.exited'] });
  expect(exited.map((e) => [e.pid, e.code, e.signal])).toEqual([[res.body.pid, 7, null]]);
});

it('SIGKILL of the spawner: its bots live on, their exits are still seen (by polling), and the next start brings up a new spawner', async () => {
  d = await startTestDaemon(
    makeConfig({
      daemon: { spawnerAbove: 0 },
      accounts: {
        steady: { command: fixture('bot.js'), stop: { graceMs: 2000 }, startMs: 100 },
        leaver: { command: fixture('crash.js'), env: { CRASH_AFTER_MS: '1500', CRASH_CODE: '0' }, restart: { policy: 'never' }, startMs: 100 },
        later: { command: fixture('bot.js'), stop: { graceMs: 2000 }, startMs: 100, env: { BOT_TICK_MS: '50' } },
      },
    }),
  );
  const steady = (await d.req('POST', '/bots/steady/start')).body.pid as number;
  const leaver = (await d.req('POST', '/bots/leaver/start')).body.pid as number;
  const spawner = parentOf(steady);
  expect(parentOf(leaver)).toBe(spawner);
  process.kill(spawner, 'SIGKILL');
  await gone(spawner);
  expect(isAlive(steady, null)).toBe(true);

  // A bot that exits by itself after its spawner died: seen by the identity poll (code unknown).
  await waitFor(async () => (await d!.req('GET', '/bots/leaver')).body.state === 'stopped', { timeoutMs: 5000, what: 'leaver stopped' });
  expect(isAlive(leaver, null)).toBe(false);

  // A new start gets a new spawner.
  const later = (await d.req('POST', '/bots/later/start')).body.pid as number;
  const spawner2 = parentOf(later);
  expect(spawner2).not.toBe(spawner);
  expect(isSpawner(spawner2)).toBe(true);

  // The orphaned bot is stopped as usual; its exit code went to init, so it is unknown.
  const stop = await d.req('POST', '/bots/steady/stop');
  expect(stop.status).toBe(200);
  expect(stop.body.state).toBe('stopped');
  expect(isAlive(steady, null)).toBe(false);
  const codes = Object.fromEntries(d.events.history(undefined, 100, { types: ['bot.exited'] }).map((e) => [e.account, e.code]));
  expect(codes).toEqual({ leaver: null, steady: null });
  // ... while the new spawner's bot still reports its code.
  await stopsCleanly(path.join(d.dataDir, 'logs', 'later.log'), later);
  await d.req('POST', '/bots/later/stop');
  expect(d.events.history(undefined, 100, { types: ['bot.exited'], account: 'later' }).map((e) => e.code)).toEqual([0]);
});

it('a match broad enough to fit the spawner never makes it a duplicate', async () => {
  d = await startTestDaemon(
    makeConfig({
      daemon: { scanIntervalMs: 100, spawnerAbove: 0 },
      accounts: {
        a: { command: fixture('bot.js'), startMs: 100 },
        greedy: { command: fixture('bot.js'), match: 'spawner\\.js', duplicates: 'kill' },
      },
    }),
  );
  const bot = (await d.req('POST', '/bots/a/start')).body.pid as number;
  const spawner = parentOf(bot);
  const scans = d.events.history(undefined, 1).at(-1)?.id ?? 0;
  await afterScans(d, 5);
  expect(isAlive(spawner, null)).toBe(true);
  expect(d.events.history(scans, 100, { types: ['duplicate.detected', 'duplicate.killed'] })).toEqual([]);
});

it('the spawner exits with a SIGKILLed daemon and the bots stay up; Ctrl-C to the daemon and its spawner still records every exit code', async () => {
  const dir = tmpDir();
  dirs.push(dir);
  const cfg = writeConfig(dir, { daemon: { spawnerAbove: 0 }, accounts: { one: { command: fixture('bot.js'), startMs: 100, stop: { graceMs: 2000 }, env: { BOT_TICK_MS: '50' } } } });
  const dataDir = path.join(dir, 'data');
  let p = spawnDaemon(dataDir, cfg);
  let c = await connectTo(dataDir, p.pid);
  const bot = (await c.req('POST', '/bots/one/start')).body.pid as number;
  const spawner = parentOf(bot);
  expect(parentOf(spawner)).toBe(p.pid);
  p.child.kill('SIGKILL');
  await p.exited;
  await gone(spawner);
  expect(isAlive(bot, null)).toBe(true);

  // The next daemon adopts the bot; its own spawner starts with its first start.
  p = spawnDaemon(dataDir, cfg);
  c = await connectTo(dataDir, p.pid);
  const view = (await c.req('GET', '/bots/one')).body;
  expect([view.state, view.pid]).toEqual(['running', bot]);
  await c.req('POST', '/bots/one/stop');
  const bot2 = (await c.req('POST', '/bots/one/start')).body.pid as number;
  const spawner2 = parentOf(bot2);
  await stopsCleanly(path.join(dataDir, 'logs', 'one.log'), bot2);
  // Ctrl-C reaches the whole foreground group: the spawner ignores it and relays the exit.
  process.kill(spawner2, 'SIGINT');
  process.kill(p.pid, 'SIGINT');
  expect(await p.exited).toEqual({ code: 0, signal: null });
  await gone(spawner2);
  expect(isAlive(bot2, null)).toBe(false);
  const db = new Database(path.join(dataDir, 'botwarden.db'), { readonly: true });
  const rows = db.prepare("SELECT data FROM events WHERE type = 'bot.exited' ORDER BY id").all() as { data: string }[];
  db.close();
  const exits = rows.map((r) => JSON.parse(r.data) as { pid: number; code: number | null });
  // The adopted bot's code went to init (unknown); the new one's came back through the spawner.
  expect(exits.map((e) => [e.pid, e.code])).toEqual([
    [bot, null],
    [bot2, 0],
  ]);
});

it('a spawn request in flight keeps its process alive until the spawner answers (its channel is unref\'d otherwise)', () => {
  const dir = tmpDir();
  dirs.push(dir);
  const mod = pathToFileURL(path.join(ROOT, 'dist', 'host', 'spawner-client.js')).href;
  // Nothing else keeps this process alive: without the ref while waiting, it would exit silently.
  const script = `import pino from 'pino'; import { Spawner } from ${JSON.stringify(mod)};
const sp = new Spawner(async () => ({ code: null, signal: null }), pino({ level: 'silent' }));
const s = await sp.spawn({ command: ['sleep', '30'], cwd: ${JSON.stringify(dir)}, env: { PATH: process.env.PATH }, logPath: ${JSON.stringify(path.join(dir, 'x.log'))} });
console.log(s.pid); sp.close();`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8', timeout: 10_000 });
  const pid = Number(out.trim());
  expect(pid).toBeGreaterThan(1);
  try {
    expect(isAlive(pid, null)).toBe(true);
  } finally {
    process.kill(pid, 'SIGKILL');
  }
});

it('closed with its daemon, the spawner hands none of its bots to the poll as it exits (leave-running: the next daemon adopts them)', async () => {
  const dir = tmpDir();
  dirs.push(dir);
  const orphaned: number[] = [];
  const sp = new Spawner(async (pid) => {
    orphaned.push(pid);
    return { code: null, signal: null };
  }, pino({ level: 'silent' }));
  const bot = await sp.spawn({ command: ['sleep', '30'], cwd: dir, env: { PATH: process.env.PATH ?? '' }, logPath: path.join(dir, 'x.log') });
  try {
    const helper = sp.pid!;
    sp.close();
    await gone(helper);
    expect(isAlive(bot.pid, bot.startTicks)).toBe(true);
    expect(orphaned).toEqual([]);
  } finally {
    process.kill(bot.pid, 'SIGKILL');
  }
});
