/**
 * The chaos walk's invariants at unit speed: seeded random operations (starts, stops with random
 * grace and escalations, restarts, crashes of leaders, hand copies, stubborn and unkillable trees,
 * daemon SIGKILLs and reboots, a shared key pool) against the real controller on the fake host,
 * every invariant checked after every step. Hundreds of steps a second: the real-process walks
 * (test/chaos*.test.ts) stay for what only the kernel does. A failure prints its seed and step.
 */
import { describe, expect, it } from 'vitest';
import { isBotwardenError } from '../../src/errors.js';
import { prng } from '../chaos/common.js';
import type { FakeProc } from './fake-host.js';
import { closeWorlds, world, type World } from './harness.js';

const ACCOUNTS = ['a', 'b', 'c'];
const SECRETS = { K1: 'key-one-value', S1: 'sec-1', K2: 'key-two-value', S2: 'sec-2' };
const KEYS = { k1: { keyEnv: 'K1', secretEnv: 'S1' }, k2: { keyEnv: 'K2', secretEnv: 'S2' } };

function accounts(rand: () => number, drop: string | null): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const id of ACCOUNTS) {
    if (id === drop) continue;
    out[id] = {
      startMs: 200,
      duplicates: id === 'c' ? 'report' : 'kill',
      restart: { policy: 'always', maxRestarts: 3, backoffMs: 100, maxBackoffMs: 800 },
      stop: { graceMs: 100 + Math.floor(rand() * 900) },
      // a and b share a pool of two keys: one bot per key value, whatever happens.
      ...(id !== 'c' ? { keys: { pool: ['k1', 'k2'], envKey: 'API_KEY', envSecret: 'API_SECRET' } } : {}),
    };
  }
  return out;
}

/** A live instance in words: its processes and its registry row. */
function inWords(w: World, id: string): string {
  const procs = w.host.live().filter((p) => p.instanceId === id).map((p) => `${p.leader ? 'leader' : 'worker'} ${p.pid} got ${p.signals.join(',') || 'no signal'}`);
  const row = w.registry.liveInstances().find((r) => r.id === id);
  return `${procs.join('; ')}; row ${row ? `pid ${row.pid}` : 'exited'}; bot ${w.sup.all().find((b) => b.id === w.host.live().find((p) => p.instanceId === id)?.account)?.view().state}`;
}

/** What must hold after every step; a message for each violation. */
async function violations(w: World): Promise<string[]> {
  const out: string[] = [];
  const locks = await w.locks.list();
  const byInstance = new Map<string, FakeProc[]>();
  for (const p of w.host.live()) {
    if (p.copy) continue;
    byInstance.set(p.instanceId, [...(byInstance.get(p.instanceId) ?? []), p]);
  }
  for (const account of ACCOUNTS) {
    const instances = new Set(w.host.live(account).filter((p) => !p.copy).map((p) => p.instanceId));
    // 1. One instance per account.
    if (instances.size > 1) out.push(`account ${account}: ${instances.size} live instances`);
    // 2. No lock released while its bot lives.
    for (const id of instances) {
      const lock = locks.find((l) => l.account === account);
      if (!lock) out.push(`account ${account}: instance ${id} lives without a lock`);
    }
    // 3. Every live bot is visible.
    const bot = w.sup.all().find((x) => x.id === account);
    for (const id of instances) if (!bot || (bot.view().instanceId !== id && bot.unkillable?.instanceId !== id)) out.push(`account ${account}: live instance ${id} not in the list (${inWords(w, id)})`);
  }
  // 4. One live bot per key value.
  const keyHolders = new Map<string, string[]>();
  for (const [id, procs] of byInstance) {
    const spec = w.host.spawned.find((s) => s.env.BOTWARDEN_INSTANCE === id);
    const key = spec?.env.API_KEY;
    if (key && procs.some((p) => p.alive)) keyHolders.set(key, [...(keyHolders.get(key) ?? []), id]);
  }
  for (const [key, ids] of keyHolders) if (ids.length > 1) out.push(`key ${key}: held by ${ids.length} live instances`);
  // 5. The gate: nothing was spawned beside a live copy.
  out.push(...w.host.gateBreaches.splice(0));
  return out;
}

async function walk(seed: number, steps: number): Promise<{ steps: number; ops: Record<string, number> }> {
  const rand = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  let w = await world(accounts(rand, null), { extra: { keys: KEYS }, env: SECRETS });
  const ops: Record<string, number> = {};
  const log: string[] = [];
  const unexpected: unknown[] = [];
  // Refusals (409, 404 of an account not configured, a spawn that failed) are answers, not bugs.
  const refusal = (err: unknown) => {
    if (!isBotwardenError(err)) unexpected.push(err);
  };
  const fire = (op: () => Promise<unknown>) => {
    try {
      void op().catch(refusal);
    } catch (err) {
      refusal(err);
    }
  };
  try {
    for (let step = 1; step <= steps; step++) {
      const account = pick(ACCOUNTS);
      const configured = w.config.accounts.has(account);
      const r = rand();
      let op: string;
      if (r < 0.22 && configured) {
        op = 'start';
        fire(() => w.sup.start(account));
      } else if (r < 0.34) {
        op = 'stop';
        fire(() => w.sup.stop(account, { graceMs: Math.floor(rand() * 2000) }));
      } else if (r < 0.38) {
        op = 'force';
        fire(() => w.sup.stop(account, { force: true }));
      } else if (r < 0.43 && configured) {
        op = 'restart';
        fire(() => w.sup.restart(account));
      } else if (r < 0.55) {
        op = 'crash-leader';
        const leader = w.host.live(account).find((p) => p.leader && !p.copy);
        if (leader) w.host.crash(leader.pid, { code: pick([0, 1, null]), signal: null });
      } else if (r < 0.61) {
        op = 'copy';
        w.host.startCopy(account);
      } else if (r < 0.67) {
        op = 'copy-ends';
        for (const p of w.host.live(account).filter((q) => q.copy)) p.die({ code: 0, signal: null });
      } else if (r < 0.73) {
        op = 'behaviour';
        w.host.behave(account, { onTerm: rand() < 0.04 ? 'unkillable' : pick(['exit', 'ignore'] as const), termMs: Math.floor(rand() * 300), workers: pick([0, 0, 1, 2]) });
      } else if (r < 0.76) {
        // The unkillable ones go at last (a D-state process that wakes).
        op = 'release';
        if (w.host.behaviourOf(account).onTerm === 'unkillable') w.host.behave(account, { onTerm: 'exit' });
        for (const p of w.host.live(account)) if (!p.copy && p.signals.includes('SIGKILL')) p.die({ code: null, signal: 'SIGKILL' });
      } else if (r < 0.8) {
        op = 'reboot';
        const drop = rand() < 0.3 ? pick(ACCOUNTS) : null;
        // The reboot's reconcile may wait out a grace: run the clock meanwhile.
        const next = w.reboot(accounts(rand, drop));
        await w.run(0);
        for (let i = 0; i < 200 && !(await Promise.race([next.then(() => true), Promise.resolve(false)])); i++) await w.run(100);
        w = await next;
      } else if (r < 0.83) {
        op = 'sweep';
        fire(() => w.sup.sweepStaleLocks());
      } else op = 'wait';
      ops[op] = (ops[op] ?? 0) + 1;
      log.push(`${step}: ${op} ${account}`);
      await w.run(Math.floor(rand() * 1500));
      const v = await violations(w);
      if (v.length > 0) throw new Error(`seed ${seed}, step ${step}: ${v.join('; ')}\n${log.slice(-12).join('\n')}`);
      if (unexpected.length > 0) throw new Error(`seed ${seed}, step ${step}: unexpected error ${String(unexpected[0])}\n${log.slice(-12).join('\n')}`);
    }
  } finally {
    closeWorlds();
  }
  return { steps, ops };
}

describe('the unit walk: invariants after every step', () => {
  const seeds = process.env.UNIT_WALK_SEED ? [Number(process.env.UNIT_WALK_SEED)] : [1, 2, 3, 4, 5, 6, 7, 8];
  const steps = Number(process.env.UNIT_WALK_STEPS ?? 150);
  it.each(seeds)('seed %i', async (seed) => {
    const r = await walk(seed, steps);
    expect(r.steps).toBe(steps);
    expect(Object.keys(r.ops).length).toBeGreaterThan(8);
  });
});
