import { afterEach, describe, expect, it } from 'vitest';
import { fixture, makeConfig, startTestDaemon, sweepLeftovers, taggedProcesses, type TestDaemon } from './helper.js';

let d: TestDaemon | undefined;
afterEach(async () => {
  await d?.close();
  d = undefined;
  expect(sweepLeftovers()).toEqual([]);
});

describe('one bot per account, however many requests race', () => {
  it('200 racing starts: exactly one 201, 199 x 409 ACCOUNT_LOCKED, one process', async () => {
    d = await startTestDaemon(makeConfig({ accounts: { acct: { command: fixture('bot.js'), startMs: 100, stop: { graceMs: 2000 } } } }));
    const results = await Promise.all(Array.from({ length: 200 }, () => d!.req('POST', '/bots/acct/start')));
    const codes = results.map((r) => r.status);
    expect(codes.filter((c) => c === 201)).toHaveLength(1);
    expect(codes.filter((c) => c === 409)).toHaveLength(199);
    expect(results.filter((r) => r.status === 409).every((r) => r.body.code === 'ACCOUNT_LOCKED')).toBe(true);
    const winner = results.find((r) => r.status === 201)!.body;
    expect(taggedProcesses('acct')).toEqual([winner.pid]);
    const locks = d.db.prepare('SELECT * FROM account_locks').all();
    expect(locks).toHaveLength(1);
  });

  it('interleaved start / stop / restart from many clients never shows two processes nor a lock without one', async () => {
    d = await startTestDaemon(makeConfig({ accounts: { acct: { command: fixture('bot.js'), startMs: 50, stop: { graceMs: 2000 } } } }));
    let maxSeen = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        maxSeen = Math.max(maxSeen, taggedProcesses('acct').length);
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    const ops = ['start', 'stop', 'restart'] as const;
    for (let round = 0; round < 6; round++) {
      await Promise.all(
        Array.from({ length: 30 }, (_, i) => d!.req('POST', `/bots/acct/${ops[(i * 7 + round) % 3]!}`)),
      );
    }
    sampling = false;
    await sampler;
    expect(maxSeen).toBeLessThanOrEqual(1);
    const bot = (await d.req('GET', '/bots/acct')).body;
    const procs = taggedProcesses('acct');
    const locks = d.db.prepare('SELECT * FROM account_locks').all() as { pid: number }[];
    if (bot.state === 'stopped') {
      expect(procs).toEqual([]);
      expect(locks).toEqual([]);
    } else {
      expect(procs).toEqual([bot.pid]);
      expect(locks.map((l) => l.pid)).toEqual([bot.pid]);
    }
  });
});
