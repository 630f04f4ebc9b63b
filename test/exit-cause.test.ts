/**
 * SPEC 16, why a bot died: `lastExit.cause` is exit, stopped (with the reason), killed-outside,
 * oom (the kernel log names the pid) or spawn-failed, and `bot.exited` carries it. Real bots.
 */
import { mkdtempSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { fixture, makeConfig, startTestDaemon, sweepLeftovers, waitFor, type TestDaemon } from './helper.js';

const daemons: TestDaemon[] = [];
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.close();
  expect(sweepLeftovers()).toEqual([]);
});

const bot = { command: fixture('bot.js'), startMs: 100, restart: { policy: 'never' } };

async function daemon(accounts: Record<string, Record<string, unknown>>): Promise<TestDaemon> {
  const d = await startTestDaemon(makeConfig({ accounts }));
  daemons.push(d);
  return d;
}

async function settled(d: TestDaemon, account: string) {
  return waitFor(async () => {
    const b = (await d.req('GET', `/bots/${account}`)).body;
    return b.state === 'stopped' || b.state === 'fatal' ? b : null;
  }, { what: `${account} ended` });
}

function exited(d: TestDaemon, account: string) {
  return d.events.history(0, 1000, { types: ['bot.exited'], account }).at(-1) as Record<string, unknown> | undefined;
}

it('exit by itself, stopped by a request, killed from outside: each says so, in lastExit and in bot.exited', async () => {
  const d = await daemon({
    exc1: { ...bot, command: fixture('crash.js'), env: { CRASH_AFTER_MS: '300', CRASH_CODE: '3' } },
    exc2: bot,
    exc3: bot,
  });
  for (const a of ['exc1', 'exc2', 'exc3']) expect((await d.req('POST', `/bots/${a}/start`)).status).toBe(201);
  await waitFor(async () => (await d.req('GET', '/bots/exc3')).body.state === 'running', { what: 'exc3 running' });

  const stopped = await d.req('POST', '/bots/exc2/stop');
  expect(stopped.body.lastExit).toMatchObject({ cause: 'stopped', reason: 'request' });

  process.kill((await d.req('GET', '/bots/exc3')).body.pid as number, 'SIGKILL');
  expect((await settled(d, 'exc3')).lastExit).toMatchObject({ cause: 'killed-outside', signal: 'SIGKILL' });
  expect(exited(d, 'exc3')).toMatchObject({ cause: 'killed-outside' });

  expect((await settled(d, 'exc1')).lastExit).toMatchObject({ cause: 'exit', code: 3, signal: null });
  expect(exited(d, 'exc1')).toMatchObject({ cause: 'exit', code: 3 });
});

it('a SIGKILL the kernel log names as an OOM kill is `oom` (root: the test writes the kernel log line)', async (ctx) => {
  const d = await daemon({ excoom: bot });
  const s = await d.req('POST', '/bots/excoom/start');
  const pid = s.body.pid as number;
  try {
    writeFileSync('/dev/kmsg', `<3>Out of memory: Killed process ${pid} (node) total-vm:1000kB, anon-rss:900kB\n`);
  } catch {
    ctx.skip(); // not root: /dev/kmsg cannot be written here (and so not read by the daemon either)
  }
  process.kill(pid, 'SIGKILL');
  expect((await settled(d, 'excoom')).lastExit).toMatchObject({ cause: 'oom', signal: 'SIGKILL' });
});

it('a command that cannot be spawned any more (its cwd removed since the config was loaded) is spawn-failed', async () => {
  const cwd = mkdtempSync(path.join(tmpdir(), 'bw-exc-'));
  const d = await daemon({ excsp: { ...bot, cwd } });
  rmdirSync(cwd);
  const r = await d.req('POST', '/bots/excsp/start');
  expect(r.status).toBe(500);
  expect((await d.req('GET', '/bots/excsp')).body).toMatchObject({ state: 'fatal', lastExit: { cause: 'spawn-failed' } });
});
