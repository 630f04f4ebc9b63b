/**
 * The chaos walk (SPEC 14): a seeded random walk over what happens to a real daemon (starts,
 * stops with random grace and escalations, restarts, reloads that add, drop and rename accounts,
 * daemon SIGKILL and SIGSTOP, SIGKILL of a leader, a worker or the spawner, copies started by hand,
 * nonce errors that trip key rotation over a shared key pool), while a sampler process checks the
 * instant invariants on every /proc sample, and the walk checks the settled ones after each step:
 * every live bot process is shown by GET /bots, and every lock row belongs to a live instance (or a
 * bot in backoff), or is released within one sweep. A failure names its seed and its steps:
 * `CHAOS_SEED=<seed> npm run chaos` replays it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { stringify } from 'yaml';
import { BOT, call as callDaemon, type WalkResult, cmdline, kill, prng, runProcesses, startDaemonProc, startSampler, stat, type DaemonProc } from './common.js';

const SCAN_MS = 200;

interface AccountPlan {
  id: string;
  duplicates: 'kill' | 'report';
  pool: string[] | null;
  stubborn: boolean;
}

export async function chaosWalk(o: { seed: number; steps: number; log?: (line: string) => void }): Promise<WalkResult> {
  const t0 = performance.now();
  const rand = prng(o.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const chance = (p: number) => rand() < p;
  const tag = `chaos-${process.pid}-${o.seed}`;
  const prefix = `cx${o.seed % 100000}`;
  const dir = mkdtempSync(path.join(tmpdir(), 'bw-chaos-'));
  const configFile = path.join(dir, 'botwarden.yaml');
  const steps: string[] = [];
  const violations: string[] = [];
  const log = o.log ?? (() => undefined);
  const keyNames = ['k1', 'k2', 'k3'];
  const secrets: Record<string, string> = {};
  for (const k of keyNames) {
    secrets[`CHAOS_${k.toUpperCase()}_KEY`] = `chaos-pub-${k}-${o.seed}`;
    secrets[`CHAOS_${k.toUpperCase()}_SECRET`] = `chaos-sec-${k}-${o.seed}`;
  }
  const keyValues = Object.values(secrets);
  let stats: { samples: number; maxGapMs: number; over10: number } | undefined;

  // The accounts: two pools sharing k2 so rotations fight over keys; kill and report copies.
  let plans: AccountPlan[] = [
    { id: `${prefix}-a`, duplicates: 'kill', pool: ['k1', 'k2'], stubborn: false },
    { id: `${prefix}-b`, duplicates: 'report', pool: ['k2', 'k3'], stubborn: false },
    { id: `${prefix}-c`, duplicates: 'kill', pool: null, stubborn: true },
    { id: `${prefix}-d`, duplicates: 'report', pool: ['k1', 'k3'], stubborn: false },
  ];
  let renames = 0;
  let writes = 0;
  const writeConfig = () => {
    const accounts: Record<string, unknown> = {};
    for (const p of plans) {
      accounts[p.id] = {
        command: ['node', BOT],
        startMs: 150,
        duplicates: p.duplicates,
        env: { CHAOS_RUN: tag, CHAOS_STUBBORN: p.stubborn ? '1' : '0', CHAOS_EXIT_DELAY_MS: String(Math.floor(rand() * 200)) },
        stop: { graceMs: 400 },
        restart: { policy: 'always', maxRestarts: 4, backoffMs: 50, maxBackoffMs: 300 },
        ...(p.pool ? { keys: { pool: p.pool, envKey: 'EXCHANGE_KEY', envSecret: 'EXCHANGE_SECRET' } } : {}),
        nonceErrors: { patterns: ['kraken'], rotateAfter: 3, windowMs: 60_000, cooldownMs: 1500 },
      };
    }
    const keys: Record<string, unknown> = {};
    for (const k of keyNames) keys[k] = { keyEnv: `CHAOS_${k.toUpperCase()}_KEY`, secretEnv: `CHAOS_${k.toUpperCase()}_SECRET` };
    // The spawner forks every bot (0), or takes over above 2 forks of the daemon's own (a daemon
    // with bots of both parents): each edit switches, so daemons of the walk start in both ways.
    const spawnerAbove = writes++ % 2 === 0 ? 0 : 2;
    writeFileSyncAtomic(configFile, stringify({ daemon: { minFreeBytes: 1048576, scanIntervalMs: SCAN_MS, healthIntervalMs: 1000, spawnerAbove }, keys, accounts }));
  };

  // The sampler first: it must see every process the walk makes.
  const sampler = await startSampler(tag, keyValues, (line) => violations.push(`step ${steps.length}: ${line}`));

  let daemon: DaemonProc | null = null;
  const copies: ChildProcess[] = [];
  let stopped = false; // SIGSTOPped

  const startDaemon = async () => {
    daemon = await startDaemonProc(dir, configFile, { ...secrets, CHAOS_RUN: tag });
  };
  const call = async (method: string, url: string, body?: unknown) => {
    const r = await callDaemon(daemon, method, url, body);
    if (r.status === 0) throw new Error(`daemon unreachable: ${method} ${url}`);
    return r;
  };

  type BotView = { account: string; state: string; pid: number | null; instanceId: string | null; configured: boolean };
  const bots = async (): Promise<BotView[]> => ((await call('GET', '/bots')).body as { bots: BotView[] }).bots;

  /** Waits until nothing is starting or stopping (backoff and fatal are settled states). */
  const settle = async () => {
    const until = performance.now() + 15_000;
    for (;;) {
      const list = await bots();
      if (list.every((b) => b.state !== 'starting' && b.state !== 'stopping')) return list;
      if (performance.now() > until) {
        violations.push(`step ${steps.length}: not settled after 15 s: ${JSON.stringify(list.filter((b) => b.state === 'starting' || b.state === 'stopping'))}`);
        return list;
      }
      await sleep(25);
    }
  };

  /** Every live bot process is shown by GET /bots (SPEC 14.3); checked twice around the call. */
  const checkVisible = async () => {
    for (let attempt = 0; ; attempt++) {
      const before = runProcesses(tag).filter((p) => p.env.has('BOTWARDEN_INSTANCE'));
      const list = await bots();
      const after = new Set(runProcesses(tag).map((p) => `${p.pid}:${p.start}`));
      const shown = new Set(list.map((b) => b.instanceId).filter(Boolean));
      const hidden = before.filter((p) => after.has(`${p.pid}:${p.start}`) && !shown.has(p.env.get('BOTWARDEN_INSTANCE')!));
      if (hidden.length === 0) return;
      if (attempt >= 20) {
        violations.push(`step ${steps.length}: live bot processes not in GET /bots: ${hidden.map((p) => `${p.pid} (${p.env.get('BOTWARDEN_ACCOUNT')} ${p.env.get('BOTWARDEN_INSTANCE')})`).join(', ')}`);
        return;
      }
      await sleep(50);
    }
  };

  /** Every lock row belongs to a live instance, or to a bot in backoff, or goes within one sweep. */
  const checkLocks = async () => {
    const stale = async () => {
      const db = new Database(path.join(dir, 'botwarden.db'), { readonly: true, fileMustExist: true });
      let rows: { account: string; instance_id: string | null }[];
      try {
        rows = db.prepare('SELECT account, instance_id FROM account_locks').all() as typeof rows;
      } finally {
        db.close();
      }
      const liveInstances = new Set(runProcesses(tag).map((p) => p.env.get('BOTWARDEN_INSTANCE')).filter(Boolean));
      const list = await bots();
      const holding = new Set(list.filter((b) => b.state === 'backoff' || b.state === 'starting' || b.state === 'stopping').map((b) => b.account));
      return rows.filter((r) => !holding.has(r.account) && (r.instance_id === null || !liveInstances.has(r.instance_id)));
    };
    let bad = await stale();
    if (bad.length === 0) return;
    await sleep(SCAN_MS * 3);
    bad = (await stale()).filter((r) => bad.some((b) => b.account === r.account && b.instance_id === r.instance_id));
    if (bad.length > 0) violations.push(`step ${steps.length}: lock rows of dead instances not released within a sweep: ${JSON.stringify(bad)}`);
  };

  const accountIds = () => plans.map((p) => p.id);
  /** What a stop may aim at: the configured accounts and any unconfigured bot still listed. */
  const stoppable = async () => [...new Set([...accountIds(), ...(await bots()).map((b) => b.account)])];
  const liveLeader = async (): Promise<BotView | null> => {
    const running = (await bots()).filter((b) => b.pid !== null);
    return running.length > 0 ? pick(running) : null;
  };

  type Step = { name: string; weight: number; run: () => Promise<string> };
  const menu: Step[] = [
    { name: 'start', weight: 14, run: async () => {
      const a = pick(accountIds());
      return `start ${a} -> ${(await call('POST', `/bots/${a}/start`)).status}`;
    } },
    { name: 'stop', weight: 10, run: async () => {
      const a = pick(await stoppable());
      const graceMs = Math.floor(rand() * 1500);
      if (chance(0.35)) {
        // An escalation: a slow stop, then a forced or shorter one while it runs.
        const slow = call('POST', `/bots/${a}/stop`, { graceMs: 20_000 });
        await sleep(Math.floor(rand() * 300));
        const fast = await call('POST', `/bots/${a}/stop`, chance(0.5) ? { force: true } : { graceMs: Math.floor(rand() * 200) });
        return `stop ${a} 20000 then escalate -> ${(await slow).status}/${fast.status}`;
      }
      return `stop ${a} grace ${graceMs} -> ${(await call('POST', `/bots/${a}/stop`, { graceMs })).status}`;
    } },
    { name: 'restart', weight: 5, run: async () => {
      const a = pick(accountIds());
      return `restart ${a} -> ${(await call('POST', `/bots/${a}/restart`, { graceMs: 300 })).status}`;
    } },
    { name: 'reload', weight: 5, run: async () => {
      const before = plans;
      const kind = plans.length < 3 ? 'add' : plans.length > 6 ? pick(['drop', 'rename']) : pick(['add', 'drop', 'rename']);
      if (kind === 'add') {
        plans = [...plans, { id: `${prefix}-n${++renames}`, duplicates: chance(0.5) ? 'kill' : 'report', pool: chance(0.5) ? ['k1', 'k2', 'k3'] : null, stubborn: false }];
      } else {
        const victim = pick(plans);
        plans = plans.filter((p) => p !== victim);
        if (kind === 'rename') plans.push({ ...victim, id: `${prefix}-r${++renames}` });
      }
      writeConfig();
      const r = await call('POST', '/config/reload');
      // Refused (a running account would be dropped): the file goes back to what the daemon runs.
      if (r.status !== 200) {
        plans = before;
        writeConfig();
      }
      return `reload ${kind} -> ${r.status}${r.status !== 200 ? ` ${r.body?.code}` : ''}`;
    } },
    { name: 'daemon-kill', weight: 4, run: async () => {
      const d = daemon!;
      d.child.kill('SIGKILL');
      await new Promise((r) => d.child.once('exit', r));
      daemon = null;
      if (chance(0.3)) {
        // While no daemon runs: a leader dies too.
        const leaders = runProcesses(tag).filter((p) => p.env.has('BOTWARDEN_INSTANCE') && cmdline(p.pid).includes('chaos-bot'));
        if (leaders.length > 0) kill(pick(leaders).pid, 'SIGKILL');
      }
      let edit = '';
      if (chance(0.3) && plans.length > 1) {
        // The file changed while no daemon ran: an account dropped or renamed, maybe while its bot runs.
        const victim = pick(plans);
        plans = plans.filter((p) => p !== victim);
        if (chance(0.5)) plans.push({ ...victim, id: `${prefix}-r${++renames}` });
        writeConfig();
        edit = ` (config without ${victim.id})`;
      }
      await sleep(Math.floor(rand() * 300));
      await startDaemon();
      return `daemon SIGKILL + start${edit}`;
    } },
    { name: 'daemon-stop', weight: 3, run: async () => {
      const d = daemon!;
      d.child.kill('SIGSTOP');
      stopped = true;
      const ms = 200 + Math.floor(rand() * 1200);
      await sleep(ms);
      d.child.kill('SIGCONT');
      stopped = false;
      return `daemon SIGSTOP ${ms} ms`;
    } },
    { name: 'kill-leader', weight: 6, run: async () => {
      const b = await liveLeader();
      if (!b) return 'kill-leader (none)';
      kill(b.pid!, 'SIGKILL');
      return `SIGKILL leader ${b.account}`;
    } },
    { name: 'kill-worker', weight: 4, run: async () => {
      const workers = runProcesses(tag).filter((p) => p.env.has('BOTWARDEN_INSTANCE') && cmdline(p.pid).startsWith('sleep'));
      if (workers.length === 0) return 'kill-worker (none)';
      const w = pick(workers);
      kill(w.pid, 'SIGKILL');
      return `SIGKILL worker of ${w.env.get('BOTWARDEN_ACCOUNT')}`;
    } },
    { name: 'kill-spawner', weight: 2, run: async () => {
      const dpid = daemon!.child.pid!;
      const sp = readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map(Number).find((pid) => {
        const st = stat(pid);
        return st?.ppid === dpid && cmdline(pid).includes('spawner');
      });
      if (sp === undefined) return 'kill-spawner (none)';
      kill(sp, 'SIGKILL');
      return 'SIGKILL spawner';
    } },
    { name: 'copy', weight: 5, run: async () => {
      const a = pick(accountIds());
      // Its own process group, as a shell job would be: ending it ends its worker too.
      const c = spawn(process.execPath, [BOT], { stdio: 'ignore', detached: true, env: { ...process.env, CHAOS_RUN: tag, CHAOS_COPY: a, BOTWARDEN_ACCOUNT: a } });
      copies.push(c);
      await sleep(50);
      return `copy of ${a} started by hand`;
    } },
    { name: 'end-copy', weight: 4, run: async () => {
      const alive = copies.filter((c) => c.exitCode === null && c.signalCode === null);
      if (alive.length === 0) return 'end-copy (none)';
      const c = pick(alive);
      kill(-c.pid!, 'SIGKILL');
      await new Promise((r) => c.once('exit', r));
      return 'copy ended';
    } },
    { name: 'nonce', weight: 8, run: async () => {
      const b = await liveLeader();
      if (!b) return 'nonce (none)';
      kill(b.pid!, 'SIGUSR1');
      await sleep(100);
      return `nonce errors from ${b.account}`;
    } },
  ];
  const total = menu.reduce((s, m) => s + m.weight, 0);
  const choose = () => {
    let r = rand() * total;
    for (const m of menu) if ((r -= m.weight) < 0) return m;
    return menu[0]!;
  };

  try {
    writeConfig();
    await startDaemon();
    for (let i = 0; i < o.steps; i++) {
      const step = choose();
      const what = await step.run();
      steps.push(what);
      log(`${i + 1} ${what}`);
      await settle();
      await checkVisible();
      await checkLocks();
      if (violations.length > 0) break;
    }
  } catch (err) {
    violations.push(`step ${steps.length}: the walk failed: ${(err as Error).stack ?? String(err)}\n${(daemon as DaemonProc | null)?.stderr ?? ''}`);
  } finally {
    // The end: shutdown leaves nothing of ours.
    const d = daemon as DaemonProc | null;
    if (d) {
      if (stopped) d.child.kill('SIGCONT');
      d.child.kill('SIGTERM');
      await Promise.race([new Promise((r) => d.child.once('exit', r)), sleep(60_000)]);
    }
    for (const c of copies) kill(-c.pid!, 'SIGKILL');
    await Promise.all(copies.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : Promise.resolve())));
    await sleep(100);
    const left = runProcesses(tag).filter((p) => p.pid !== sampler.pid);
    if (left.length > 0) {
      violations.push(`after shutdown, processes left: ${left.map((p) => `${p.pid} ${p.env.get('BOTWARDEN_ACCOUNT') ?? ''}`).join(', ')}`);
      for (const p of left) kill(p.pid, 'SIGKILL');
    }
    stats = await sampler.stats();
    await sampler.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return { seed: o.seed, steps, violations, samples: stats?.samples ?? 0, maxGapMs: stats?.maxGapMs ?? 0, over10: stats?.over10 ?? 0, ms: performance.now() - t0 };
}

/** A reload must never read half a file. */
function writeFileSyncAtomic(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}
