/**
 * `botwarden stop A --force` from a second terminal while a long graceful stop runs (SPEC 14.6):
 * the CLI's flag reaches the daemon and cuts the stop short.
 */
import { execFile } from 'node:child_process';
import { afterEach, expect, it } from 'vitest';
import { isAlive } from '../src/host/procfs.js';
import { fixture, makeConfig, startTestDaemon, sweepLeftovers, waitFor, type TestDaemon } from './helper.js';
import { CLI } from './proc-helper.js';

let d: TestDaemon | undefined;
afterEach(async () => {
  await d?.close();
  d = undefined;
  expect(sweepLeftovers()).toEqual([]);
});

const env = () => ({ ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BOTWARDEN_') || k === 'BOTWARDEN_SCOPE')), NO_COLOR: '1' });
const run = (args: string[]) =>
  new Promise<{ code: number; stdout: string }>((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: env(), timeout: 20_000 }, (err, stdout) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout }));
  });

it('stop --force cuts a 30 s graceful stop of a bot that ignores SIGTERM short', async () => {
  d = await startTestDaemon(makeConfig({ accounts: { stubborn: { command: fixture('no-killable.js'), startMs: 100, stop: { graceMs: 30_000 } } } }));
  const g = ['--data-dir', d.dataDir];
  const pid = (await d.req('POST', '/bots/stubborn/start')).body.pid as number;
  await waitFor(async () => (await d!.req('GET', '/bots/stubborn')).body.state === 'running', { what: 'running' });
  const graceful = run([...g, 'stop', 'stubborn']);
  await waitFor(async () => (await d!.req('GET', '/bots/stubborn')).body.state === 'stopping', { what: 'stopping' });
  const t0 = Date.now();
  const forced = await run([...g, 'stop', 'stubborn', '--force']);
  expect(forced.code).toBe(0);
  expect(forced.stdout).toMatch(/^stubborn: stopped/);
  // Well inside the 30 s grace: the graceful stop answers too, with the forced exit.
  expect(Date.now() - t0).toBeLessThan(15_000);
  expect((await graceful).code).toBe(0);
  expect(isAlive(pid, null)).toBe(false);
  expect((await d.req('GET', '/bots/stubborn')).body.lastExit).toMatchObject({ forced: true, signal: 'SIGKILL' });
});
