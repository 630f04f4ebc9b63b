/**
 * Issue 20, item 5: a stop's grace is timed on a monotonic clock. A wall clock stepped back 3 s
 * during the grace (NTP, a VM resync) must not delay the SIGKILL.
 */
import { spawn } from 'node:child_process';
import { afterEach, expect, it } from 'vitest';
import type { Clock } from '../src/clock.js';
import { terminate } from '../src/host/terminate.js';
import { FIXTURES, killChildren, sweepLeftovers, TEST_TAG } from './helper.js';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';

const children: ChildProcess[] = [];
afterEach(async () => {
  await killChildren(children);
  expect(sweepLeftovers()).toEqual([]);
});

it('SIGKILL comes when the grace is over on the monotonic clock, whatever the wall clock does', async () => {
  const child = spawn(process.execPath, [path.join(FIXTURES, 'no-killable.js')], { detached: true, stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, BW_TEST_TAG: TEST_TAG } });
  children.push(child);
  await new Promise<void>((r) => child.stdout.once('data', () => r()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const t0 = performance.now();
  // The wall clock steps back 3 s, 100 ms into the grace.
  const stepped: Clock = {
    now: () => (performance.now() - t0 > 100 ? Date.now() - 3000 : Date.now()),
    mono: () => performance.now(),
    setTimeout: (fn, ms) => {
      const t = setTimeout(fn, ms);
      return { cancel: () => clearTimeout(t) };
    },
  };
  const r = await terminate({ instanceId: 'no-marker', pid: child.pid!, pgid: child.pid!, startTicks: null, exited }, 'SIGTERM', 300, stepped);
  const ms = performance.now() - t0;
  expect(r).toEqual({ forced: true, gone: true });
  expect(ms).toBeGreaterThanOrEqual(300);
  expect(ms).toBeLessThan(2000); // not 3.3 s
});
