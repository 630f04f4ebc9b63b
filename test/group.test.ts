/**
 * Group commit of bursts: the writes of one turn share a commit, and nothing leaves the process
 * (a streamed event, a page of history, a signal, a reply) before what it follows from is
 * committed. Real SQLite files, a real tmpfs for the full disk, a real daemon and real bots.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { ServerResponse } from 'node:http';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, expect, it } from 'vitest';
import { CommitGroup } from '../src/db/group.js';
import { openDatabase, type DB } from '../src/db/open.js';
import { EventStore } from '../src/events/store.js';
import { fixture, makeConfig, removeDir, startTestDaemon, sweepLeftovers, tmpDir, waitFor, type TestDaemon } from './helper.js';

let d: TestDaemon | null = null;
const cleanup: (() => void)[] = [];
afterEach(async () => {
  await d?.close();
  d = null;
  for (const fn of cleanup.splice(0).reverse()) fn();
  expect(sweepLeftovers()).toEqual([]);
});

const turnEnds = () => new Promise((r) => setImmediate(r));

function store(dir: string) {
  const file = path.join(dir, 'botwarden.db');
  const db: DB = openDatabase(file);
  const errors: unknown[] = [];
  const group = new CommitGroup(db, (err) => errors.push(err));
  const events = new EventStore(db, Date.now, undefined, group);
  const reader = new Database(file, { readonly: true });
  const stored = () => (reader.prepare('SELECT count(*) AS n FROM events').get() as { n: number }).n;
  const heard: string[] = [];
  events.subscribe((e) => heard.push(e.type));
  cleanup.push(() => {
    reader.close();
    db.close();
  });
  return { db, group, events, stored, heard, errors };
}

it('the writes of one turn share one commit: other connections, subscribers and durable() see them only after it', async () => {
  const dir = tmpDir();
  cleanup.push(() => removeDir(dir));
  const { db, group, events, stored, heard } = store(dir);
  group.begin();
  events.emit('daemon.started', { pid: 1 });
  // An event with the write that goes with it: a savepoint inside the group, not a commit.
  events.emit('lock.released', { account: 'a', token: 1 }, () => db.prepare("INSERT INTO fencing (account, token) VALUES ('a', 1)").run());
  let durable = false;
  void events.durable().then(() => (durable = true));
  expect([stored(), heard, durable]).toEqual([0, [], false]);
  await turnEnds();
  expect([stored(), heard, durable]).toEqual([2, ['daemon.started', 'lock.released'], true]);
  // No group open: stored and streamed at once, as before.
  events.emit('bot.exited', { account: 'a', pid: 2, code: 0, signal: null });
  expect([stored(), heard.length]).toEqual([3, 3]);
  // flush() commits now (a reply is about to leave).
  group.begin();
  events.emit('bot.exited', { account: 'a', pid: 3, code: 0, signal: null });
  events.flush();
  expect([stored(), heard.length, group.active]).toEqual([4, 4, false]);
});

it('a page of history read while a group is open is committed first: replay, then subscribe, never gives an event twice', async () => {
  const dir = tmpDir();
  cleanup.push(() => removeDir(dir));
  const { group, events, stored } = store(dir);
  group.begin();
  const e = events.emit('lock.released', { account: 'a', token: 7 });
  const page = events.history(0, 10);
  const live: number[] = [];
  events.subscribe((x) => live.push(x.id));
  await turnEnds();
  expect(page.map((x) => x.id)).toEqual([e.id]);
  expect(stored()).toBe(1);
  expect(live).toEqual([]);
});

it('a group whose commit fails on a full disk streams none of its events, counts them lost, and the store recovers', async (ctx) => {
  const dir = tmpDir('botwarden-full-');
  cleanup.push(() => removeDir(dir));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', dir], { stdio: 'ignore' });
  } catch {
    console.warn('skipped: cannot mount a tmpfs here (not root, or no mount permission)');
    ctx.skip();
    return;
  }
  cleanup.push(() => execFileSync('umount', [dir]));
  const { group, events, stored, heard, errors } = store(dir);
  const filler = path.join(dir, 'filler');
  const fd = openSync(filler, 'w');
  try {
    for (;;) writeSync(fd, Buffer.alloc(16 * 1024, 1));
  } catch {
    // ENOSPC: full
  } finally {
    closeSync(fd);
  }
  expect(Number(statfsSync(dir).bavail)).toBe(0);
  group.begin();
  // ~400 KB of events: more than the log file already holds, so the commit needs new blocks.
  for (let i = 0; i < 100; i++) events.emit('bot.exited', { account: 'a', pid: i, code: 0, signal: null, note: 'x'.repeat(4000) });
  await turnEnds();
  expect(errors).toHaveLength(1);
  expect(String(errors[0])).toMatch(/full/i);
  expect([heard, stored(), events.lostEvents, group.active]).toEqual([[], 0, 100, false]);
  // Space again: the next event is stored, then the loss is reported.
  rmSync(filler);
  events.emit('daemon.started', { pid: 1 });
  expect(heard).toEqual(['daemon.started', 'storage.recovered']);
  expect(events.history(0, 10, { types: ['storage.recovered'] })[0]).toMatchObject({ lostEvents: 100 });
});

it('a shutdown commits every bot’s stopping state before its signal leaves: each bot reads "stopping" from the database on SIGTERM', async () => {
  const dir = tmpDir();
  cleanup.push(() => removeDir(dir));
  const stateFile = path.join(dir, 'states');
  const N = 30;
  const accounts: Record<string, Record<string, unknown>> = {};
  for (let i = 0; i < N; i++) {
    accounts[`r${i}`] = { command: fixture('state-reader.js'), startMs: 50, stop: { graceMs: 5000 }, env: { STATE_DB: path.join(dir, 'data', 'botwarden.db'), STATE_FILE: stateFile } };
  }
  d = await startTestDaemon(makeConfig({ accounts }), { dataDir: path.join(dir, 'data') });
  for (let i = 0; i < N; i++) expect((await d.req('POST', `/bots/r${i}/start`)).status).toBe(201);
  const logs = path.join(dir, 'data', 'logs');
  await waitFor(() => Object.keys(accounts).every((a) => existsSync(path.join(logs, `${a}.log`)) && readFileSync(path.join(logs, `${a}.log`), 'utf8').includes('ready')), {
    timeoutMs: 20_000,
    what: 'every reader ready',
  });
  await d.close();
  const lines = readFileSync(stateFile, 'utf8').trim().split('\n').sort();
  expect(lines).toEqual(Object.keys(accounts).map((a) => `${a} stopping`).sort());
}, 60_000);

it('a reply leaves only once what it reports is committed: the database says stopped as the stop reply is written', async () => {
  d = await startTestDaemon(makeConfig({ accounts: { a: { command: fixture('bot.js'), startMs: 50, stop: { graceMs: 5000 } } } }));
  const reader = new Database(path.join(d.dataDir, 'botwarden.db'), { readonly: true });
  cleanup.push(() => reader.close());
  expect((await d.req('POST', '/bots/a/start')).status).toBe(201);
  await waitFor(async () => (await d!.req('GET', '/bots/a')).body.state === 'running', { what: 'running' });
  const seen: string[] = [];
  const end = ServerResponse.prototype.end;
  cleanup.push(() => (ServerResponse.prototype.end = end));
  ServerResponse.prototype.end = function (this: ServerResponse, ...args: unknown[]) {
    if (this.req?.url === '/bots/a/stop') seen.push((reader.prepare("SELECT state FROM bots WHERE account = 'a'").get() as { state: string }).state);
    return (end as (...a: unknown[]) => ServerResponse).apply(this, args);
  } as typeof end;
  const res = await d.req('POST', '/bots/a/stop');
  expect([res.status, res.body.state]).toEqual([200, 'stopped']);
  expect(seen).toEqual(['stopped']);
});
