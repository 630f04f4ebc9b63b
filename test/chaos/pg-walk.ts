/**
 * The PostgreSQL chaos walk (issue 20): two daemons on one lease database, each behind a TCP proxy
 * of its own, through a seeded random walk of starts and stops on either daemon, partitions of one
 * daemon or both (blackhole, reset, delay), database restarts, SIGSTOP and SIGKILL of a daemon and
 * of its watchdog, a stuck peer holding a lease row lock, and nonce errors rotating a shared key
 * pool. The sampler checks on every /proc sample that no account and no key has two live
 * instances, across both daemons. `CHAOS_SEED=<seed> npm run chaos:pg` replays a walk.
 *
 * Not walked: a daemon frozen together with its watchdog (a double failure nothing in user space
 * on that machine can answer: docs/operations.md), and a wake of a suspended machine, which a
 * process cannot fake for another (the in-process test with the injected boot clock covers it).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { stringify } from 'yaml';
import { CutProxy, startPostgres, type ProxyMode, type TestPg } from '../pg-helper.js';
import { BOT, call, kill, type WalkResult, prng, runProcesses, startDaemonProc, startSampler, type DaemonProc } from './common.js';

const LOCK = { leaseMs: 5000, renewMs: 500 };

export async function pgChaosWalk(o: { seed: number; steps: number; log?: (line: string) => void }): Promise<WalkResult> {
  const t0 = performance.now();
  const rand = prng(o.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const chance = (p: number) => rand() < p;
  const tag = `pgchaos-${process.pid}-${o.seed}`;
  const prefix = `pgx${o.seed % 100000}`;
  const steps: string[] = [];
  const violations: string[] = [];
  const log = o.log ?? (() => undefined);
  const secrets: Record<string, string> = {};
  for (const k of ['k1', 'k2', 'k3']) {
    secrets[`PGCHAOS_${k.toUpperCase()}_KEY`] = `pgchaos-pub-${k}-${o.seed}`;
    secrets[`PGCHAOS_${k.toUpperCase()}_SECRET`] = `pgchaos-sec-${k}-${o.seed}`;
  }
  const accounts = [`${prefix}-a`, `${prefix}-b`, `${prefix}-c`];
  const pools: Record<string, string[] | null> = { [accounts[0]!]: ['k1', 'k2'], [accounts[1]!]: ['k2', 'k3'], [accounts[2]!]: null };

  const db: TestPg = await startPostgres();
  const proxies = [new CutProxy(db.port), new CutProxy(db.port)];
  for (const p of proxies) await p.listen();
  const dirs = [mkdtempSync(path.join(tmpdir(), 'bw-pgchaos-x-')), mkdtempSync(path.join(tmpdir(), 'bw-pgchaos-y-'))];
  const names = ['laptop', 'vps'];
  const configs = dirs.map((dir, i) => {
    const file = path.join(dir, 'botwarden.yaml');
    const accts: Record<string, unknown> = {};
    for (const a of accounts) {
      const pool = pools[a];
      accts[a] = {
        command: ['node', BOT],
        startMs: 150,
        duplicates: 'kill',
        env: { CHAOS_RUN: tag },
        stop: { graceMs: 300 },
        restart: { policy: 'on-failure', maxRestarts: 3, backoffMs: 100, maxBackoffMs: 400 },
        ...(pool ? { keys: { pool, envKey: 'EXCHANGE_KEY', envSecret: 'EXCHANGE_SECRET' } } : {}),
        nonceErrors: { patterns: ['kraken'], rotateAfter: 3, windowMs: 60_000, cooldownMs: 1500 },
      };
    }
    const keys: Record<string, unknown> = {};
    for (const k of ['k1', 'k2', 'k3']) keys[k] = { keyEnv: `PGCHAOS_${k.toUpperCase()}_KEY`, secretEnv: `PGCHAOS_${k.toUpperCase()}_SECRET` };
    writeFileSync(
      file,
      stringify({
        // One daemon's spawner forks every bot, the other's takes over above 2 forks of its own.
        daemon: { name: names[i], minFreeBytes: 1048576, scanIntervalMs: 200, spawnerAbove: i === 0 ? 0 : 2 },
        lock: { backend: 'postgres', url: `\${PGCHAOS_URL}`, ...LOCK },
        keys,
        accounts: accts,
      }),
    );
    return file;
  });

  const sampler = await startSampler(tag, Object.values(secrets), (line) => violations.push(`step ${steps.length}: ${line}`));
  const daemons: (DaemonProc | null)[] = [null, null];
  let stats: { samples: number; maxGapMs: number; over10: number } | undefined;
  const frozen = [false, false];
  const start = async (i: number) => {
    daemons[i] = await startDaemonProc(dirs[i]!, configs[i]!, { ...secrets, CHAOS_RUN: tag, PGCHAOS_URL: db.url(proxies[i]!.port) });
  };
  const watchdogPid = async (i: number): Promise<number | null> => {
    const h = await call(daemons[i]!, 'GET', '/health', undefined, 3000);
    const w = (h.body?.checks as { name: string; detail: string }[] | undefined)?.find((c) => c.name === 'watchdog');
    const m = w ? /pid (\d+)/.exec(w.detail) : null;
    return m ? Number(m[1]) : null;
  };
  /**
   * Waits `ms` while the daemons not in `faulty` keep asking for every account, as a VPS whose
   * operator restarts the bots a cut-off laptop holds: the takeover races the fault.
   */
  const meanwhile = async (faulty: number[], ms: number) => {
    const until = performance.now() + ms;
    const others = [0, 1].filter((i) => !faulty.includes(i));
    while (performance.now() < until) {
      for (const i of others) await call(daemons[i]!, 'POST', `/bots/${pick(accounts)}/start`, undefined, 3000);
      await sleep(Math.min(250, Math.max(0, until - performance.now())));
    }
  };
  const partition = async (targets: number[], mode: ProxyMode, ms: number) => {
    for (const t of targets) {
      if (mode === 'delay') proxies[t]!.delayMs = 50 + Math.floor(rand() * 400);
      proxies[t]!.set(mode);
    }
    await meanwhile(targets, ms);
    for (const t of targets) proxies[t]!.set('pass');
  };

  type Step = { weight: number; run: () => Promise<string> };
  const menu: Step[] = [
    { weight: 16, run: async () => {
      const i = pick([0, 1]);
      const a = pick(accounts);
      return `start ${a} on ${names[i]} -> ${(await call(daemons[i]!, 'POST', `/bots/${a}/start`, undefined, 20_000)).status}`;
    } },
    { weight: 8, run: async () => {
      const i = pick([0, 1]);
      const a = pick(accounts);
      return `stop ${a} on ${names[i]} -> ${(await call(daemons[i]!, 'POST', `/bots/${a}/stop`, { graceMs: Math.floor(rand() * 800) }, 20_000)).status}`;
    } },
    { weight: 8, run: async () => {
      const targets = chance(0.2) ? [0, 1] : [pick([0, 1])];
      const mode = pick<ProxyMode>(['blackhole', 'reset', 'delay']);
      const ms = 500 + Math.floor(rand() * 7000);
      await partition(targets, mode, ms);
      return `partition ${targets.map((t) => names[t]).join('+')} ${mode} ${ms} ms`;
    } },
    { weight: 2, run: async () => {
      await db.restart();
      return 'database restart';
    } },
    { weight: 4, run: async () => {
      const i = pick([0, 1]);
      const ms = 500 + Math.floor(rand() * 7000);
      daemons[i]!.child.kill('SIGSTOP');
      frozen[i] = true;
      await meanwhile([i], ms);
      daemons[i]!.child.kill('SIGCONT');
      frozen[i] = false;
      return `SIGSTOP ${names[i]} ${ms} ms`;
    } },
    { weight: 3, run: async () => {
      const i = pick([0, 1]);
      const d = daemons[i]!;
      d.child.kill('SIGKILL');
      await new Promise((r) => (d.child.exitCode !== null || d.child.signalCode !== null ? r(null) : d.child.once('exit', r)));
      daemons[i] = null;
      await meanwhile([i], Math.floor(rand() * 1000));
      await start(i);
      return `SIGKILL ${names[i]} + start`;
    } },
    { weight: 3, run: async () => {
      const i = pick([0, 1]);
      const w = await watchdogPid(i);
      if (w === null) return `SIGKILL watchdog of ${names[i]} (none)`;
      kill(w, 'SIGKILL');
      await meanwhile([i], 300);
      return `SIGKILL watchdog of ${names[i]}`;
    } },
    { weight: 2, run: async () => {
      const i = pick([0, 1]);
      const w = await watchdogPid(i);
      if (w === null) return `SIGSTOP watchdog of ${names[i]} (none)`;
      const ms = 300 + Math.floor(rand() * 2000);
      kill(w, 'SIGSTOP');
      await meanwhile([i], ms);
      kill(w, 'SIGCONT');
      return `SIGSTOP watchdog of ${names[i]} ${ms} ms`;
    } },
    { weight: 3, run: async () => {
      // A peer stuck inside a transaction holding a lease row lock (a laptop that slept mid-acquire).
      const a = pick(accounts);
      const ms = 500 + Math.floor(rand() * 4000);
      const c = new pg.Client({ connectionString: db.url() });
      c.on('error', () => undefined);
      try {
        await c.connect();
        await c.query('BEGIN');
        await c.query('SELECT * FROM botwarden_account_leases WHERE account = $1 FOR UPDATE', [a]);
        await sleep(ms);
        await c.query('ROLLBACK');
      } catch {
        // the database restarted under it
      } finally {
        await c.end().catch(() => undefined);
      }
      return `stuck peer on ${a} ${ms} ms`;
    } },
    { weight: 6, run: async () => {
      const leaders = runProcesses(tag).filter((p) => p.env.has('BOTWARDEN_INSTANCE') && p.env.has('EXCHANGE_KEY'));
      if (leaders.length === 0) return 'nonce (none)';
      const l = pick(leaders);
      kill(l.pid, 'SIGUSR1');
      await sleep(100);
      return `nonce errors from ${l.env.get('BOTWARDEN_ACCOUNT')}`;
    } },
  ];
  const total = menu.reduce((s, m) => s + m.weight, 0);
  const choose = () => {
    let r = rand() * total;
    for (const m of menu) if ((r -= m.weight) < 0) return m;
    return menu[0]!;
  };

  /** Every live bot process is shown by one of the daemons' GET /bots (after a short settle). */
  const checkVisible = async () => {
    for (let attempt = 0; ; attempt++) {
      const before = runProcesses(tag).filter((p) => p.env.has('BOTWARDEN_INSTANCE'));
      const shown = new Set<string>();
      for (const d of daemons) {
        const r = await call(d, 'GET', '/bots', undefined, 5000);
        for (const b of (r.body?.bots ?? []) as { instanceId: string | null }[]) if (b.instanceId) shown.add(b.instanceId);
      }
      const after = new Set(runProcesses(tag).map((p) => `${p.pid}:${p.start}`));
      const hidden = before.filter((p) => after.has(`${p.pid}:${p.start}`) && !shown.has(p.env.get('BOTWARDEN_INSTANCE')!));
      if (hidden.length === 0) return;
      if (attempt >= 40) {
        violations.push(`step ${steps.length}: live bot processes in no daemon's GET /bots: ${hidden.map((p) => `${p.pid} (${p.env.get('BOTWARDEN_ACCOUNT')})`).join(', ')}`);
        return;
      }
      await sleep(100);
    }
  };

  try {
    await start(0);
    await start(1);
    for (let i = 0; i < o.steps; i++) {
      const what = await choose().run();
      steps.push(what);
      log(`${i + 1} ${what}`);
      // A daemon that died by itself (not by a step's SIGKILL) is a failure of its own.
      for (const [j, d] of daemons.entries()) {
        if (d && (d.child.exitCode !== null || d.child.signalCode !== null)) {
          violations.push(`step ${steps.length}: ${names[j]} died by itself (${d.child.exitCode ?? d.child.signalCode}): ${d.stderr.slice(-3000)}`);
        }
      }
      if (violations.length > 0) break;
      await checkVisible();
      if (violations.length > 0) break;
    }
  } catch (err) {
    violations.push(`step ${steps.length}: the walk failed: ${(err as Error).stack ?? String(err)}\n${daemons.map((d) => d?.stderr ?? '').join('\n')}`);
  } finally {
    for (const [i, p] of proxies.entries()) {
      p.set('pass');
      if (frozen[i]) daemons[i]?.child.kill('SIGCONT');
    }
    await Promise.all(
      daemons.map(async (d) => {
        if (!d || d.child.exitCode !== null || d.child.signalCode !== null) return;
        d.child.kill('SIGTERM');
        await Promise.race([new Promise((r) => d.child.once('exit', r)), sleep(30_000)]);
      }),
    );
    await sleep(200);
    const left = runProcesses(tag);
    if (left.length > 0) {
      violations.push(`after shutdown, processes left: ${left.map((p) => `${p.pid} ${p.env.get('BOTWARDEN_ACCOUNT') ?? ''}`).join(', ')}`);
      for (const p of left) kill(p.pid, 'SIGKILL');
    }
    stats = await sampler.stats();
    await sampler.close();
    for (const p of proxies) await p.close();
    await db.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
  return { seed: o.seed, steps, violations, samples: stats?.samples ?? 0, maxGapMs: stats?.maxGapMs ?? 0, over10: stats?.over10 ?? 0, ms: performance.now() - t0 };
}
