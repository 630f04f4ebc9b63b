/**
 * A freqtrade bot's sd_notify client (Python's sdnotify) connects its socket once, at start: after
 * a daemon restart its WATCHDOG=1 still goes to the dead daemon's socket. The new daemon must not
 * take it for a hung bot and restart it (it would, every daemon restart, on every such bot).
 */
import path from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { FIXTURES, sweepLeftovers, tmpDir, waitFor } from './helper.js';
import { connectTo, killDaemons, spawnDaemon, writeConfig } from './proc-helper.js';

afterEach(() => {
  killDaemons();
  expect(sweepLeftovers()).toEqual([]);
});

it('an adopted bot whose notify client connected once keeps running past many watchdog periods', async () => {
  const dir = tmpDir();
  const file = writeConfig(dir, {
    accounts: {
      nfo: {
        command: ['python3', path.join(FIXTURES, 'notify-bot.py')],
        startMs: 60_000,
        env: { NB_READY_AFTER: '0.1', NB_CONNECT_ONCE: '1' },
        stop: { graceMs: 300 },
        liveness: { graceMs: 500, notify: true, watchdogMs: 500, action: 'restart' },
      },
    },
  });
  const d1 = spawnDaemon(dir, file);
  let c = await connectTo(dir, d1.pid);
  const s = await c.req('POST', '/bots/nfo/start');
  await waitFor(async () => (await c.req('GET', '/bots/nfo')).body.state === 'running', { timeoutMs: 5000, what: 'running on READY=1' });
  d1.child.kill('SIGKILL');
  await d1.exited;
  const d2 = spawnDaemon(dir, file);
  c = await connectTo(dir, d2.pid);
  await waitFor(async () => (await c.req('GET', '/bots/nfo')).body.state === 'running', { what: 'adopted' });
  // Six watchdog periods without a WATCHDOG=1 reaching this daemon.
  await new Promise((r) => setTimeout(r, 3000));
  const b = (await c.req('GET', '/bots/nfo')).body;
  expect(b).toMatchObject({ state: 'running', pid: s.body.pid, restarts: 0 });
  const history = (await c.req('GET', '/events/history?types=bot.unresponsive&limit=10')).body;
  expect(history.events).toHaveLength(0);
  await c.req('POST', '/bots/nfo/stop');
  d2.child.kill('SIGTERM');
  await d2.exited;
}, 20_000);
