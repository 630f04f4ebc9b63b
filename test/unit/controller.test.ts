/**
 * The bot controller on its own: the real Supervisor and BotController against a fake host and a
 * ManualClock (test/unit/harness.ts). Start gate, backoff, stop escalation, unkillable trees,
 * adoption decisions and liveness decisions, case by case; real processes stay in the other files
 * for the edges.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { LockBackendError } from '../../src/errors.js';
import { backoffDelay } from '../../src/supervisor/policy.js';
import { closeWorlds, lockOf, world, type World } from './harness.js';

let w: World | undefined;
afterEach(closeWorlds);


describe('start and stop', () => {
  it('a start spawns one process under the lock; running after startMs; a stop ends it and frees the lock', async () => {
    w = await world({ a: { startMs: 200 } });
    const v = await w.sup.start('a');
    expect(v).toMatchObject({ state: 'starting', pid: w.running('a')[0]!.pid });
    expect((await lockOf(w, 'a'))?.pid).toBe(v.pid);
    await w.run(199);
    expect(w.sup.get('a').view().state).toBe('starting');
    await w.run(1);
    expect(w.sup.get('a').view().state).toBe('running');
    const stopped = w.sup.stop('a');
    await w.run(100);
    expect(await stopped).toMatchObject({ state: 'stopped', lastExit: { signal: 'SIGTERM', forced: false, cause: 'stopped', reason: 'request' } });
    expect(w.running('a')).toEqual([]);
    expect(await lockOf(w, 'a')).toBeNull();
    expect(w.types('a')).toEqual(['lock.acquired', 'bot.starting', 'bot.running', 'bot.stopping', 'bot.exited', 'lock.released', 'bot.stopped']);
  });

  it('a second start while running is refused at once (409 ACCOUNT_LOCKED), spawning nothing', async () => {
    w = await world({ a: {} });
    await w.sup.start('a');
    await expect(w.sup.start('a')).rejects.toMatchObject({ code: 'ACCOUNT_LOCKED' });
    expect(w.host.spawned).toHaveLength(1);
  });

  it('100 racing starts of one account spawn exactly one process', async () => {
    w = await world({ a: {} });
    const all = await Promise.allSettled(Array.from({ length: 100 }, () => w!.sup.start('a')));
    expect(all.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(w.host.spawned).toHaveLength(1);
  });

  it('a spawn that fails: fatal (spawn-failed), lock released, the error says so', async () => {
    w = await world({ a: {} });
    w.host.behave('a', { spawnFails: true });
    await expect(w.sup.start('a')).rejects.toMatchObject({ code: 'SPAWN_FAILED' });
    expect(w.sup.get('a').view()).toMatchObject({ state: 'fatal', lastExit: { cause: 'spawn-failed' } });
    expect(await lockOf(w, 'a')).toBeNull();
  });
});

describe('start gate (SPEC 14.5)', () => {
  it('report: a requested start over a live copy is refused with DUPLICATE_RUNNING; nothing spawned, no lock', async () => {
    w = await world({ a: { duplicates: 'report' } });
    const copy = w.host.startCopy('a');
    await expect(w.sup.start('a')).rejects.toMatchObject({ code: 'DUPLICATE_RUNNING', details: { pids: [copy.pid] } });
    expect(w.host.spawned).toHaveLength(0);
    expect(await lockOf(w, 'a')).toBeNull();
    expect(w.sup.get('a').view().state).toBe('stopped');
  });

  it('kill: the copy is ended before the bot is spawned', async () => {
    w = await world({ a: { duplicates: 'kill' } });
    const copy = w.host.startCopy('a');
    await w.sup.start('a');
    expect(copy.alive).toBe(false);
    expect(w.host.live('a')).toHaveLength(1);
  });

  it('report: a backoff restart with a copy alive waits in backoff (duplicate), then goes fatal after maxRestarts refusals', async () => {
    w = await world({ a: { duplicates: 'report', restart: { policy: 'always', maxRestarts: 3, backoffMs: 100, maxBackoffMs: 1000 } } });
    const first = (await w.sup.start('a')).pid!;
    await w.run(150);
    const copy = w.host.startCopy('a');
    w.host.crash(first);
    await w.run(100 * 1 + 5);
    // Every automatic start passes the gate: refused, nothing spawned.
    expect(w.host.spawned).toHaveLength(1);
    expect(w.sup.get('a').view().state).toBe('backoff');
    await w.run(10_000);
    expect(w.sup.get('a').view().state).toBe('fatal');
    expect(w.events.history(0, 100, { types: ['bot.fatal'] })[0]).toMatchObject({ reason: 'duplicate', pids: [copy.pid] });
    expect(w.host.spawned).toHaveLength(1);
    expect(await lockOf(w, 'a')).toBeNull();
  });

  it('report: the copy goes away during backoff, and the next automatic start spawns', async () => {
    w = await world({ a: { duplicates: 'report', restart: { policy: 'always', maxRestarts: 5, backoffMs: 100, maxBackoffMs: 1000 } } });
    const first = (await w.sup.start('a')).pid!;
    await w.run(150);
    const copy = w.host.startCopy('a');
    w.host.crash(first);
    await w.run(250);
    expect(w.sup.get('a').view().state).toBe('backoff');
    copy.die({ code: 0, signal: null });
    await w.run(2000);
    expect(w.sup.get('a').view().state).toBe('running');
    expect(w.host.spawned).toHaveLength(2);
  });
});

describe('restart policy and backoff', () => {
  const cases: { policy: 'always' | 'on-failure' | 'never'; code: number | null; signal: string | null; wasRunning: boolean; expect: string }[] = [];
  for (const policy of ['always', 'on-failure', 'never'] as const) {
    for (const [code, signal] of [[0, null], [1, null], [null, 'SIGSEGV']] as const) {
      for (const wasRunning of [true, false]) {
        const failed = code !== 0 || signal !== null;
        const expected = wasRunning ? (policy === 'always' || (policy === 'on-failure' && failed) ? 'backoff' : 'stopped') : policy === 'never' ? 'fatal' : 'backoff';
        cases.push({ policy, code, signal, wasRunning, expect: expected });
      }
    }
  }
  it.each(cases)('policy $policy, exit code $code signal $signal while running=$wasRunning -> $expect', async (c) => {
    w = await world({ a: { startMs: 100, restart: { policy: c.policy, maxRestarts: 3, backoffMs: 200, maxBackoffMs: 5000 } } });
    const pid = (await w.sup.start('a')).pid!;
    if (c.wasRunning) await w.run(150);
    w.host.crash(pid, { code: c.code, signal: c.signal });
    await w.settle();
    const v = w.sup.get('a').view();
    expect(v.state).toBe(c.expect);
    expect(v.lastExit).toMatchObject({ code: c.code, signal: c.signal, cause: c.signal === null ? 'exit' : 'killed-outside' });
    // Backoff keeps the lock (pid null); stopped and fatal release it.
    const lock = await lockOf(w, 'a');
    if (c.expect === 'backoff') expect(lock).not.toBeNull();
    else expect(lock).toBeNull();
  });

  for (const maxRestarts of [0, 1, 2, 5]) {
    it(`quick failures back off ${maxRestarts} times with growing delays, then fatal (too-many-failures)`, async () => {
      const r = { policy: 'always' as const, maxRestarts, backoffMs: 100, maxBackoffMs: 400 };
      w = await world({ a: { startMs: 1000, restart: r } });
      w.host.behave('a', { crashAfterMs: 10, crashStatus: { code: 2, signal: null } });
      await w.sup.start('a');
      const delays: number[] = [];
      for (let i = 0; i < maxRestarts + 1; i++) {
        await w.run(11);
        const v = w.sup.get('a').view();
        if (v.state === 'fatal') break;
        expect(v.state).toBe('backoff');
        const ev = w.events.history(0, 1000, { types: ['bot.backoff'] }).at(-1)!;
        delays.push(ev.delayMs as number);
        await w.run(ev.delayMs as number);
      }
      expect(w.sup.get('a').view().state).toBe('fatal');
      expect(w.events.history(0, 100, { types: ['bot.fatal'] })[0]).toMatchObject({ reason: maxRestarts === 0 ? 'too-many-failures' : 'too-many-failures' });
      expect(delays).toEqual(Array.from({ length: maxRestarts }, (_, i) => backoffDelay(r, i + 1)));
      expect(w.host.spawned).toHaveLength(maxRestarts + 1);
      expect(await lockOf(w, 'a')).toBeNull();
    });
  }

  it('a stop during backoff cancels the restart and releases the lock', async () => {
    w = await world({ a: { restart: { policy: 'always', backoffMs: 1000 } } });
    const pid = (await w.sup.start('a')).pid!;
    await w.run(150);
    w.host.crash(pid);
    await w.settle();
    expect(w.sup.get('a').view().state).toBe('backoff');
    await w.sup.stop('a');
    await w.run(5000);
    expect(w.sup.get('a').view().state).toBe('stopped');
    expect(w.host.spawned).toHaveLength(1);
    expect(await lockOf(w, 'a')).toBeNull();
  });

  it('an unexpected exit ends the leader’s workers before the restart (SPEC 14.4)', async () => {
    w = await world({ a: { restart: { policy: 'always', backoffMs: 100 } } });
    w.host.behave('a', { workers: 2 });
    const pid = (await w.sup.start('a')).pid!;
    await w.run(150);
    w.host.crash(pid);
    await w.settle();
    await w.run(60);
    expect(w.host.live('a')).toEqual([]);
    await w.run(200);
    expect(w.running('a').filter((p) => p.leader)).toHaveLength(1);
    expect(w.running('a')).toHaveLength(3);
  });
});

describe('stop escalation (SPEC 14.6)', () => {
  it('a forced stop cuts a 20 s graceful stop short: SIGKILL without waiting out the grace', async () => {
    w = await world({ a: { stop: { graceMs: 20_000 } } });
    w.host.behave('a', { onTerm: 'ignore' });
    const proc = w.host.live('a')[0] ?? (await w.sup.start('a'), w.running('a')[0]!);
    const graceful = w.sup.stop('a');
    await w.run(1000);
    expect(w.sup.get('a').view().state).toBe('stopping');
    const forced = w.sup.stop('a', { force: true });
    await w.run(50);
    expect((await graceful).state).toBe('stopped');
    expect((await forced).state).toBe('stopped');
    expect(proc.signals).toEqual(['SIGTERM', 'SIGKILL']);
    expect(w.clock.mono() - Date.parse('2026-11-23T00:00:00Z')).toBeLessThan(2000);
    expect(w.sup.get('a').view().lastExit).toMatchObject({ forced: true, signal: 'SIGKILL' });
  });

  for (const [first, second, cut] of [
    [20_000, 5000, true],
    [5000, 20_000, false],
    [5000, 5000, false],
  ] as const) {
    it(`a stop with graceMs ${second} during one with ${first}: ${cut ? 'cut short' : 'runs its course'}`, async () => {
      w = await world({ a: {} });
      w.host.behave('a', { onTerm: 'ignore' });
      await w.sup.start('a');
      const t0 = w.clock.mono();
      const a = w.sup.stop('a', { graceMs: first });
      await w.run(100);
      const b = w.sup.stop('a', { graceMs: second });
      let done = false;
      void Promise.all([a, b]).then(() => (done = true));
      await w.run(Math.min(first, 100 + second) - 100 - 10);
      expect(done).toBe(false);
      await w.run(40);
      expect(done).toBe(true);
      expect(w.clock.mono() - t0).toBeLessThanOrEqual((cut ? 100 + second : first) + 40);
    });
  }

  it('a force during the pre-stop hook cuts the hook short and the stop that follows gets grace 0', async () => {
    w = await world({ a: { stop: { graceMs: 10_000, before: { command: ['node', '-e', '0'], timeoutMs: 30_000 } } } });
    w.host.behave('a', { onTerm: 'ignore', hookMs: 20_000 });
    const proc = (await w.sup.start('a'), w.running('a')[0]!);
    const s = w.sup.stop('a');
    await w.run(500);
    expect(w.host.hooks).toHaveLength(1);
    void w.sup.stop('a', { force: true });
    await w.run(50);
    expect((await s).state).toBe('stopped');
    expect(w.host.hooks[0]!.aborted).toBe(true);
    expect(proc.signals).toEqual(['SIGTERM', 'SIGKILL']);
  });
});

describe('released only when gone (SPEC 14.7)', () => {
  it('a tree that outlives SIGKILL keeps the lock: fatal (unkillable); once it is gone the lock goes', async () => {
    w = await world({ a: { stop: { graceMs: 100 } } });
    w.host.behave('a', { onTerm: 'unkillable' });
    const proc = (await w.sup.start('a'), w.running('a')[0]!);
    const s = w.sup.stop('a');
    // grace 100 ms, SIGKILL, 5 s for the kernel (KILL_WAIT_MS), 2 s for the leader's status
    await w.run(7200);
    expect((await s).state).toBe('fatal');
    expect(w.sup.get('a').unkillable).toMatchObject({ pid: proc.pid });
    expect(await lockOf(w, 'a')).not.toBeNull();
    await expect(w.sup.start('a')).rejects.toMatchObject({ code: 'ACCOUNT_LOCKED' });
    await w.run(5000);
    expect(await lockOf(w, 'a')).not.toBeNull();
    proc.die({ code: null, signal: 'SIGKILL' });
    await w.run(1100);
    expect(await lockOf(w, 'a')).toBeNull();
    expect(w.sup.get('a').unkillable).toBeNull();
    await w.sup.start('a');
    expect(w.running('a')).toHaveLength(1);
  });

  it('a process the lock could not record (attach failed) that outlives SIGKILL keeps the lock until it is gone', async () => {
    w = await world({ a: {} });
    w.host.behave('a', { onTerm: 'unkillable' });
    const attach = vi.spyOn(w.locks, 'attach').mockRejectedValue(new LockBackendError('the database went away'));
    const start = w.sup.start('a');
    let failed: unknown = null;
    start.catch((err: unknown) => (failed = err));
    await w.run(7200);
    expect(failed).toMatchObject({ code: 'LOCK_BACKEND_UNAVAILABLE' });
    const proc = w.host.live('a')[0]!;
    expect(w.sup.get('a').view().state).toBe('fatal');
    expect(w.sup.get('a').unkillable).toMatchObject({ pid: proc.pid });
    expect(await lockOf(w, 'a')).not.toBeNull();
    attach.mockRestore();
    proc.die({ code: null, signal: 'SIGKILL' });
    await w.run(1100);
    expect(await lockOf(w, 'a')).toBeNull();
  });
});
