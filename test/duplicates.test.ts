import { spawn, type ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { isAlive } from '../src/host/procfs.js';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterScans, fixture, FIXTURES, killChildren, makeConfig, startTestDaemon, sweepLeftovers, TEST_TAG, waitFor, type TestDaemon } from './helper.js';

let d: TestDaemon | undefined;
const strays: ChildProcess[] = [];
afterEach(async () => {
  await d?.close();
  d = undefined;
  await killChildren(strays);
  expect(sweepLeftovers()).toEqual([]);
});

const uniq = () => `bw-dup-${Math.random().toString(36).slice(2, 10)}`;

/** A copy of the bot started by hand, from "a stray shell": not by the daemon. */
function handStart(args: string[], env: Record<string, string> = {}): ChildProcess {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BOTWARDEN_') || k === 'BOTWARDEN_SCOPE'));
  const c = spawn(process.execPath, [`${FIXTURES}bot.js`, ...args], { env: { ...clean, BW_TEST_TAG: TEST_TAG, ...env }, stdio: 'ignore' });
  strays.push(c);
  return c;
}

const exited = (c: ChildProcess) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r())));

describe('duplicate hunter', () => {
  it('kills a hand-started copy whose command line matches within 2 scan intervals; the owned bot lives', async () => {
    const id = uniq();
    d = await startTestDaemon(makeConfig({ daemon: { scanIntervalMs: 200 }, accounts: { k: { command: fixture('bot.js', ['--id', id]), match: id, startMs: 100, stop: { graceMs: 500 } } } }));
    const owned = (await d.req('POST', '/bots/k/start')).body;
    await afterScans(d, 2); // the owned bot is never flagged
    const t0 = Date.now();
    const copy = handStart(['--id', id]);
    await waitFor(() => d!.events.history(0, 100, { types: ['duplicate.detected'] }).length > 0, { what: 'detected', timeoutMs: 3000 });
    const detectedAfter = Date.now() - t0;
    await exited(copy);
    const killed = await waitFor(() => d!.events.history(0, 100, { types: ['duplicate.killed'] })[0], { what: 'killed' });
    const detected = d.events.history(0, 100, { types: ['duplicate.detected'] });
    expect(detected).toHaveLength(1);
    expect(detected[0]).toMatchObject({ account: 'k', pid: copy.pid, by: 'match', policy: 'kill' });
    expect(killed).toMatchObject({ account: 'k', pid: copy.pid, forced: false });
    expect(detectedAfter).toBeLessThan(2 * 200 + 250); // 2 intervals, plus the copy's own exec
    expect(isAlive(owned.pid, null)).toBe(true);
    expect((await d.req('GET', '/bots/k')).body).toMatchObject({ state: 'running', pid: owned.pid });
  });

  it('catches a copy by its BOTWARDEN_ACCOUNT marker without any match, and SIGKILLs one that ignores the signal', async () => {
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BOTWARDEN_') || k === 'BOTWARDEN_SCOPE'));
    const copy = spawn(process.execPath, [`${FIXTURES}no-killable.js`], { env: { ...clean, BW_TEST_TAG: TEST_TAG, BOTWARDEN_ACCOUNT: 'envacct' }, stdio: ['ignore', 'pipe', 'ignore'] });
    strays.push(copy);
    // The copy ignores SIGTERM only once Node has booted and installed its handler: the hunter
    // starts after that, or on a slow machine it could catch the copy still killable by SIGTERM.
    await new Promise<void>((r) => copy.stdout.once('data', () => r()));
    d = await startTestDaemon(makeConfig({ daemon: { scanIntervalMs: 200 }, accounts: { envacct: { command: fixture('bot.js'), stop: { graceMs: 300 } } } }));
    await exited(copy);
    const killed = await waitFor(() => d!.events.history(0, 100, { types: ['duplicate.killed'] })[0], { what: 'killed' });
    expect(killed).toMatchObject({ account: 'envacct', pid: copy.pid, forced: true });
    expect(d.events.history(0, 100, { types: ['duplicate.detected'] })[0]).toMatchObject({ by: 'env' });
  });

  it('hunts only its own BOTWARDEN_SCOPE: a copy of another scope, or of none, is not its business', async () => {
    const scope = process.env.BOTWARDEN_SCOPE!;
    expect(scope).toMatch(/^test-/); // test/setup-scope.ts
    const other = handStart([], { BOTWARDEN_ACCOUNT: 'scoped', BOTWARDEN_SCOPE: `${scope}-other` });
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BOTWARDEN_')));
    const none = spawn(process.execPath, [`${FIXTURES}bot.js`], { env: { ...clean, BW_TEST_TAG: TEST_TAG, BOTWARDEN_ACCOUNT: 'scoped' }, stdio: 'ignore' });
    strays.push(none);
    d = await startTestDaemon(makeConfig({ daemon: { scanIntervalMs: 100 }, accounts: { scoped: { command: fixture('bot.js'), stop: { graceMs: 300 } } } }));
    const bot = (await d.req('POST', '/bots/scoped/start')).body;
    expect(bot.state).toBe('starting');
    await afterScans(d, 4);
    expect(d.events.history(0, 100, { types: ['duplicate.'] })).toEqual([]);
    expect(isAlive(other.pid!, null) && isAlive(none.pid!, null)).toBe(true);
    // The same scope: a copy, found and ended.
    const mine = handStart([], { BOTWARDEN_ACCOUNT: 'scoped' });
    await exited(mine);
    expect(d.events.history(0, 100, { types: ['duplicate.detected'] })).toMatchObject([{ account: 'scoped', pid: mine.pid, by: 'env' }]);
  });

  it.each([['0'], ['1']])('never flags the owned bot’s own children or setsid grandchildren (setsid=%s)', async (setsid) => {
    const id = uniq();
    d = await startTestDaemon(
      makeConfig({ daemon: { scanIntervalMs: 100 }, accounts: { tree: { command: fixture('grandchild.js', ['--id', id]), match: id, env: { GRANDCHILD_SETSID: setsid }, stop: { graceMs: 300 } } } }),
    );
    await d.req('POST', '/bots/tree/start');
    // The tree is up (the bot prints its worker's pid once spawned), then several scans of it.
    await waitFor(() => /grandchild=\d+/.test(readFileSync(path.join(d!.dataDir, 'logs', 'tree.log'), 'utf8')), { what: 'the worker spawned' });
    await afterScans(d, 5);
    expect(d.events.history(0, 100, { types: ['duplicate.'] })).toEqual([]);
    await d.req('POST', '/bots/tree/stop');
  });

  it('report: leaves the copy running, reports it once, health degrades, and recovers when it ends', async () => {
    const id = uniq();
    d = await startTestDaemon(makeConfig({ daemon: { scanIntervalMs: 100 }, accounts: { rep: { command: fixture('bot.js', ['--id', id]), match: id, duplicates: 'report' } } }));
    const copy = handStart(['--id', id]);
    await waitFor(async () => (await d!.req('GET', '/health')).body.status === 'degraded', { what: 'degraded' });
    await new Promise((r) => setTimeout(r, 500)); // several more scans
    expect(isAlive(copy.pid!, null)).toBe(true);
    expect(d.events.history(0, 100, { types: ['duplicate.detected'] })).toHaveLength(1);
    const health = (await d.req('GET', '/health')).body;
    expect(health.checks.find((c: { name: string }) => c.name === 'duplicates')).toMatchObject({ status: 'degraded', detail: expect.stringContaining(`rep pid ${copy.pid}`) });
    expect((await d.req('GET', '/health', { token: null })).text).not.toContain('rep'); // no names without a token
    copy.kill('SIGTERM');
    await exited(copy);
    await waitFor(async () => (await d!.req('GET', '/health')).body.status === 'ok', { what: 'ok again' });
    expect(d.events.history(0, 100, { types: ['duplicate.killed'] })).toEqual([]);
  });

  it('a start over a live copy: `kill` ends it first then starts one; `report` refuses with DUPLICATE_RUNNING naming the pids', async () => {
    const idK = uniq();
    const idR = uniq();
    d = await startTestDaemon(
      makeConfig({
        daemon: { scanIntervalMs: 60_000 }, // only the start's own scan can see the copies
        accounts: {
          killer: { command: fixture('bot.js', ['--id', idK]), match: idK, stop: { graceMs: 500 } },
          reporter: { command: fixture('bot.js', ['--id', idR]), match: idR, duplicates: 'report' },
        },
      }),
    );
    const k = handStart(['--id', idK]);
    const r = handStart(['--id', idR]);
    await new Promise((res) => setTimeout(res, 150));
    const started = await d.req('POST', '/bots/killer/start');
    expect(started.status).toBe(201);
    expect(isAlive(k.pid!, null)).toBe(false);
    expect(d.events.history(0, 100, { types: ['duplicate.killed'] }).map((e) => e.pid)).toEqual([k.pid]);
    const refused = await d.req('POST', '/bots/reporter/start');
    expect(refused.status).toBe(409);
    expect(refused.body.code).toBe('DUPLICATE_RUNNING');
    expect(refused.body.pids).toEqual([r.pid]);
    expect(refused.body.message).toContain(String(r.pid));
    expect(isAlive(r.pid!, null)).toBe(true);
    expect((await d.req('GET', '/bots/reporter')).body).toMatchObject({ state: 'stopped', lock: null });
  });

  it('raises duplicate.suspected from output lines that betray a second instance', async () => {
    d = await startTestDaemon(
      makeConfig({
        accounts: {
          tg: {
            command: fixture('bot.js'),
            env: { BOT_PRINT: 'Error 409: Conflict: terminated by other getUpdates request; make sure that only one bot instance is running|price 10002 ok|Duplicate order sent' },
          },
        },
      }),
    );
    await d.req('POST', '/bots/tg/start');
    const ev = await waitFor(() => {
      const e = d!.events.history(0, 100, { types: ['duplicate.suspected'] });
      return e.length >= 2 ? e : null;
    }, { what: 'suspected' });
    expect(ev.map((e) => e.pattern)).toEqual(['telegram-conflict', 'duplicate-order']);
    expect(ev[0]).toMatchObject({ account: 'tg', line: expect.stringContaining('Conflict: terminated by other getUpdates request') });
  });
});
