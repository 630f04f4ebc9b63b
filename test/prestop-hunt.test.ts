/**
 * The pre-stop hook carries BOTWARDEN_ACCOUNT (a hook may need to know its account); the duplicate
 * hunter must not take it for a copy of the bot and end it while it runs (it did: the hook's
 * exit then said SIGTERM, and duplicate.detected named it).
 */
import { afterEach, expect, it } from 'vitest';
import { fixture, makeConfig, startTestDaemon, sweepLeftovers, type TestDaemon } from './helper.js';

let d: TestDaemon | undefined;
afterEach(async () => {
  await d?.close();
  d = undefined;
  expect(sweepLeftovers()).toEqual([]);
});

it('a pre-stop hook that runs for several scans is the bot’s own: not hunted, it ends well', async () => {
  d = await startTestDaemon(
    makeConfig({
      daemon: { scanIntervalMs: 100 },
      accounts: { ph: { command: fixture('bot.js'), startMs: 100, stop: { graceMs: 2000, before: { command: ['node', '-e', 'setTimeout(() => {}, 1200)'], timeoutMs: 5000 } } } },
    }),
  );
  await d.req('POST', '/bots/ph/start');
  expect((await d.req('POST', '/bots/ph/stop')).status).toBe(200);
  const ev = d.events.history(0, 100, { types: ['bot.prestop', 'duplicate.'] });
  expect(ev.filter((e) => e.type.startsWith('duplicate.'))).toEqual([]);
  expect(ev.find((e) => e.type === 'bot.prestop')).toMatchObject({ ok: true, reason: 'request' });
});
