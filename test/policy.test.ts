/** The restart policy and the state table, table-style: no processes, no clock. */
import { describe, expect, it } from 'vitest';
import { afterExit, backoffDelay, type RestartConfig } from '../src/supervisor/policy.js';
import { BOT_STATES, canTransition, type BotState } from '../src/supervisor/states.js';

const R = (policy: RestartConfig['policy'], maxRestarts = 3): RestartConfig => ({ policy, maxRestarts, backoffMs: 100, maxBackoffMs: 1000 });

describe('restart policy', () => {
  it.each([
    // wasStarting, quickFailures before, code, signal, policy, expected
    [true, 0, 1, null, R('on-failure'), { kind: 'backoff', attempt: 1, delayMs: 100, quickFailures: 1 }],
    [true, 1, 1, null, R('on-failure'), { kind: 'backoff', attempt: 2, delayMs: 200, quickFailures: 2 }],
    [true, 2, 0, null, R('on-failure'), { kind: 'backoff', attempt: 3, delayMs: 400, quickFailures: 3 }],
    [true, 3, 1, null, R('on-failure'), { kind: 'fatal', reason: 'too-many-failures', quickFailures: 4 }],
    [true, 0, 1, null, R('never'), { kind: 'fatal', reason: 'exited-early', quickFailures: 1 }],
    [true, 0, 0, null, R('always', 0), { kind: 'fatal', reason: 'too-many-failures', quickFailures: 1 }],
    [false, 2, 1, null, R('on-failure'), { kind: 'backoff', attempt: 1, delayMs: 100, quickFailures: 0 }],
    [false, 0, null, 'SIGSEGV', R('on-failure'), { kind: 'backoff', attempt: 1, delayMs: 100, quickFailures: 0 }],
    [false, 0, 0, null, R('on-failure'), { kind: 'stopped', quickFailures: 0 }],
    [false, 0, 0, null, R('always'), { kind: 'backoff', attempt: 1, delayMs: 100, quickFailures: 0 }],
    [false, 0, 1, null, R('never'), { kind: 'stopped', quickFailures: 0 }],
  ] as const)('starting=%s failures=%i code=%s signal=%s %o -> %o', (wasStarting, quickFailures, code, signal, r, expected) => {
    expect(afterExit({ wasStarting, quickFailures, code, signal }, r)).toEqual(expected);
  });

  it('caps the delay at maxBackoffMs', () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(R('always'), n))).toEqual([100, 200, 400, 800, 1000, 1000]);
  });
});

describe('state table', () => {
  const allowed: Record<BotState, BotState[]> = {
    stopped: ['starting', 'running', 'backoff', 'fatal'],
    starting: ['running', 'stopping', 'backoff', 'fatal', 'stopped'],
    running: ['stopping', 'backoff', 'stopped', 'fatal'],
    // A restart refused by the start gate (SPEC 14.5) waits in backoff, from a rotation's stop or a backoff.
    stopping: ['stopped', 'starting', 'fatal', 'backoff'],
    backoff: ['starting', 'stopped', 'fatal', 'backoff'],
    fatal: ['starting', 'fatal'],
  };
  for (const from of BOT_STATES) {
    for (const to of BOT_STATES) {
      const ok = allowed[from].includes(to);
      it(`${from} -> ${to} is ${ok ? 'allowed' : 'refused'}`, () => expect(canTransition(from, to)).toBe(ok));
    }
  }
});
