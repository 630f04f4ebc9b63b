import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { fixture, makeConfig, startTestDaemon, sweepLeftovers, waitFor, type TestDaemon } from './helper.js';

let d: TestDaemon | undefined;
afterEach(async () => {
  await d?.close();
  d = undefined;
  expect(sweepLeftovers()).toEqual([]);
});

const crashing = (restart: object) =>
  makeConfig({ accounts: { c: { command: fixture('crash.js'), startMs: 5000, stop: { graceMs: 500 }, restart } } });

/** Waits for the real exit of the real process, then returns the bot's state. */
async function settle(d: TestDaemon, state: string) {
  return waitFor(async () => {
    const b = (await d.req('GET', '/bots/c')).body;
    return b.state === state ? b : null;
  }, { what: `state ${state}` });
}

describe('restart policy with backoff (time driven, not slept)', () => {
  it('backs off exponentially up to maxBackoffMs, then goes fatal after maxRestarts quick failures, keeping no lock', async () => {
    const clock = new ManualClock();
    d = await startTestDaemon(crashing({ policy: 'on-failure', maxRestarts: 4, backoffMs: 1000, maxBackoffMs: 3000 }), { clock });
    expect((await d.req('POST', '/bots/c/start')).status).toBe(201);
    const delays: number[] = [];
    for (let i = 0; i < 4; i++) {
      await settle(d, 'backoff');
      const ev = d.events.history(undefined, 1, { types: ['bot.backoff'] })[0]!;
      delays.push(ev.delayMs as number);
      // Not a moment early: one ms short of the delay nothing happens.
      const starts = () => d!.events.history(0, 1000, { types: ['bot.starting'] }).length;
      const before = starts();
      clock.advance(ev.delayMs as number - 1);
      expect((await d.req('GET', '/bots/c')).body.state).toBe('backoff');
      expect(starts()).toBe(before);
      clock.advance(1);
      // The restart is under way now (its spawn opens the log file off the event loop).
      await waitFor(() => starts() === before + 1, { what: 'the restart' });
    }
    const fatal = await settle(d, 'fatal');
    expect(delays).toEqual([1000, 2000, 3000, 3000]);
    expect(fatal).toMatchObject({ state: 'fatal', lock: null, pid: null, restarts: 4, lastExit: { code: 3 } });
    const ev = d.events.history(undefined, 1, { types: ['bot.fatal'] })[0]!;
    expect(ev).toMatchObject({ reason: 'too-many-failures', failures: 5 });
    expect(d.db.prepare('SELECT count(*) AS n FROM account_locks').get()).toEqual({ n: 0 });
    // A fatal bot can be started again by an operator.
    expect((await d.req('POST', '/bots/c/start')).status).toBe(201);
  });

  it('holds the lock through backoff: a start in backoff is ACCOUNT_LOCKED, a stop cancels the restart', async () => {
    const clock = new ManualClock();
    d = await startTestDaemon(crashing({ policy: 'always', maxRestarts: 5, backoffMs: 1000, maxBackoffMs: 1000 }), { clock });
    await d.req('POST', '/bots/c/start');
    await settle(d, 'backoff');
    const again = await d.req('POST', '/bots/c/start');
    expect(again.status).toBe(409);
    expect(again.body.code).toBe('ACCOUNT_LOCKED');
    const stopped = await d.req('POST', '/bots/c/stop');
    expect(stopped.body).toMatchObject({ state: 'stopped', lock: null });
    clock.advance(10_000);
    expect((await d.req('GET', '/bots/c')).body.state).toBe('stopped');
  });

  it('policy never: an early exit is fatal at once; a clean exit after startMs is just stopped', async () => {
    const clock = new ManualClock();
    d = await startTestDaemon(
      makeConfig({
        accounts: {
          c: { command: fixture('crash.js'), startMs: 5000, restart: { policy: 'never' } },
          ok: { command: fixture('crash.js'), env: { CRASH_CODE: '0', CRASH_AFTER_MS: '150' }, startMs: 100, restart: { policy: 'on-failure' } },
        },
      }),
      { clock },
    );
    await d.req('POST', '/bots/c/start');
    await settle(d, 'fatal');
    await d.req('POST', '/bots/ok/start');
    clock.advance(100); // alive for startMs -> running
    expect((await d.req('GET', '/bots/ok')).body.state).toBe('running');
    const b = await waitFor(async () => {
      const x = (await d!.req('GET', '/bots/ok')).body;
      return x.state === 'stopped' ? x : null;
    });
    expect(b).toMatchObject({ lastExit: { code: 0 }, lock: null });
  });

  it('on-failure restarts a bot that crashes after running, with a fresh failure count', async () => {
    const clock = new ManualClock();
    d = await startTestDaemon(
      makeConfig({ accounts: { c: { command: fixture('crash.js'), env: { CRASH_AFTER_MS: '200' }, startMs: 100, restart: { policy: 'on-failure', maxRestarts: 1, backoffMs: 500 } } } }),
      { clock },
    );
    for (let i = 0; i < 3; i++) {
      if (i === 0) await d.req('POST', '/bots/c/start');
      await settle(d, 'starting');
      clock.advance(100); // running
      expect((await d.req('GET', '/bots/c')).body.state).toBe('running');
      await settle(d, 'backoff');
      clock.advance(500);
    }
    expect((await d.req('GET', '/bots/c')).body.restarts).toBe(3);
  });
});
