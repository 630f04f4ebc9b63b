/**
 * Correctness at scale (speed lives in `npm run bench`): 300 bots start, are
 * adopted after a daemon SIGKILL with the same pids, and stop, with exactly one
 * process per account throughout and nothing left behind.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { environValue, isAlive, listPids, readStat } from '../src/host/procfs.js';
import { afterScans, sweepLeftovers, TEST_TAG, tmpDir, waitFor } from './helper.js';
import { connectTo, killDaemons, spawnDaemon, writeConfig } from './proc-helper.js';

afterEach(() => {
  killDaemons();
  expect(sweepLeftovers()).toEqual([]);
});

const N = 300;

/** account -> pids of this file's live processes carrying BOTWARDEN_ACCOUNT (one pass over /proc). */
function processesByAccount(): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const pid of listPids()) {
    const st = readStat(pid);
    if (!st || st.state === 'Z' || environValue(pid, 'BW_TEST_TAG') !== TEST_TAG) continue;
    const a = environValue(pid, 'BOTWARDEN_ACCOUNT');
    if (typeof a === 'string') out.set(a, [...(out.get(a) ?? []), pid]);
  }
  return out;
}

describe(`${N} bots on one daemon`, () => {
  it('start, adoption after SIGKILL (same pids, none doubled) and stop, one process per account throughout', async () => {
    const dir = tmpDir();
    const accounts: Record<string, Record<string, unknown>> = {};
    for (let i = 0; i < N; i++) accounts[`b${i}`] = { command: ['sleep', '3600'], startMs: 50, stop: { graceMs: 3000 } };
    const cfg = writeConfig(dir, { daemon: { scanIntervalMs: 250 }, accounts });
    const first = spawnDaemon(dir, cfg);
    const c = await connectTo(dir, first.pid);
    const ids = Object.keys(accounts);
    let next = 0;
    const started = new Map<string, number>();
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        while (next < ids.length) {
          const id = ids[next++]!;
          const r = await c.req('POST', `/bots/${id}/start`);
          expect(r.status, id).toBe(201);
          started.set(id, r.body.pid as number);
        }
      }),
    );
    let seen = processesByAccount();
    expect(seen.size).toBe(N);
    for (const [a, pids] of seen) expect(pids, a).toEqual([started.get(a)]);

    // A daemon crash: every bot keeps running and is adopted, same pid, nothing doubled.
    first.child.kill('SIGKILL');
    await first.exited;
    const second = spawnDaemon(dir, cfg);
    const c2 = await connectTo(dir, second.pid);
    const bots = await waitFor(
      async () => {
        const b = (await c2.req('GET', '/bots')).body.bots as { account: string; state: string; pid: number; lock: unknown }[];
        return b.every((x) => x.state === 'running') ? b : null;
      },
      { timeoutMs: 20_000, what: 'every bot adopted' },
    );
    for (const b of bots) {
      expect(b.pid, b.account).toBe(started.get(b.account));
      expect(b.lock, b.account).not.toBeNull();
    }
    await afterScans(c2, 2); // no bot is its own duplicate
    seen = processesByAccount();
    expect(seen.size).toBe(N);
    for (const [a, pids] of seen) expect(pids, a).toEqual([started.get(a)]);
    expect((await c2.req('GET', '/events/history?types=duplicate.&limit=10')).body.events).toEqual([]);

    // Stop: SIGTERM to the daemon stops every bot and releases every lock.
    second.child.kill('SIGTERM');
    expect(await second.exited).toEqual({ code: 0, signal: null });
    for (const pid of started.values()) expect(isAlive(pid, null)).toBe(false);
    const third = spawnDaemon(dir, cfg);
    const c3 = await connectTo(dir, third.pid);
    const after = (await c3.req('GET', '/bots')).body.bots as { state: string; lock: unknown }[];
    expect(after.filter((b) => b.state !== 'stopped' || b.lock !== null)).toEqual([]);
  }, 120_000);
});
