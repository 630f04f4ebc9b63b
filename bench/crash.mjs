// Random SIGKILLs of the daemon while start/stop/restart requests are in flight, then a new
// daemon on the same data dir, then the invariants. Used by test/crash.test.ts (20 cycles)
// and by `npm run bench` (50 cycles, with figures).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = path.join(ROOT, 'dist', 'cli.js');
const BOT = path.join(ROOT, 'test', 'fixtures', 'bot.js');

/** mulberry32: a seeded PRNG, so a failing run can be replayed with its seed. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function readStat(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: f[0], pgid: Number(f[2]), ticks: Number(f[19]) };
  } catch {
    return null;
  }
}

function envOf(pid) {
  try {
    return new Map(
      readFileSync(`/proc/${pid}/environ`, 'utf8')
        .split('\0')
        .filter(Boolean)
        .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
    );
  } catch {
    return null;
  }
}

/** Live bot processes (group leaders) carrying this run's tag, by account. */
export function liveBots(tag) {
  const out = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    const st = readStat(pid);
    if (!st || st.state === 'Z' || st.pgid !== pid) continue;
    const env = envOf(pid);
    if (!env || env.get('CRASH_TAG') !== tag) continue;
    const acct = env.get('BOTWARDEN_ACCOUNT');
    if (!out.has(acct)) out.set(acct, []);
    out.get(acct).push(pid);
  }
  return out;
}

export function killTagged(tag) {
  const left = [];
  for (const pids of liveBots(tag).values()) for (const pid of pids) {
    left.push(pid);
    try { process.kill(pid, 'SIGKILL'); } catch {}
  }
  return left;
}

function spawnDaemon(dir, cfg) {
  const child = spawn(process.execPath, [CLI, 'daemon', '--data-dir', dir, '--config', cfg, '--listen', '127.0.0.1:0'], {
    env: { ...process.env, BOTWARDEN_TOKEN: '', BOTWARDEN_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c) => (stderr += c));
  const exited = new Promise((r) => child.once('exit', r));
  return { child, exited, stderr: () => stderr };
}

async function connect(dir, d, t0) {
  const info = path.join(dir, 'daemon.json');
  for (;;) {
    if (existsSync(info)) {
      try {
        const j = JSON.parse(readFileSync(info, 'utf8'));
        if (j.pid === d.child.pid) {
          const token = readFileSync(path.join(dir, 'api-token'), 'utf8').trim();
          return { url: j.url, token, readyMs: performance.now() - t0 };
        }
      } catch {}
    }
    if (d.child.exitCode !== null) throw new Error(`daemon exited: ${d.stderr()}`);
    if (performance.now() - t0 > 15_000) throw new Error('daemon did not come up');
    await sleep(2);
  }
}

async function call(c, method, p) {
  const res = await fetch(c.url + p, { method, headers: { authorization: `Bearer ${c.token}` } });
  return { status: res.status, body: await res.json() };
}

/**
 * Runs `cycles` kill/restart cycles. Returns figures; throws on the first broken invariant.
 */
export async function crashCycles({ cycles, seed = Date.now() % 1e9, accounts = 4, log = () => {} }) {
  const rand = prng(seed);
  const tag = `crash-${process.pid}-${seed}`;
  const dir = mkdtempSync(path.join(tmpdir(), 'bw-crash-'));
  const names = Array.from({ length: accounts }, (_, i) => `acct${i}`);
  const cfgAccounts = {};
  names.forEach((n, i) => {
    cfgAccounts[n] = {
      // One real Node bot, the rest `sleep` (cheap on 2 cores); all carry the tag.
      command: i === 0 ? ['node', BOT] : ['sleep', '3600'],
      startMs: 100,
      stop: { graceMs: 2000 },
      restart: i % 2 === 0 ? { policy: 'never' } : { policy: 'on-failure', backoffMs: 600_000, maxBackoffMs: 600_000 },
      env: { CRASH_TAG: tag },
    };
  });
  const cfg = path.join(dir, 'botwarden.yaml');
  writeFileSync(cfg, JSON.stringify({ daemon: { scanIntervalMs: 200 }, accounts: cfgAccounts }));
  const figures = { seed, cycles: 0, requestsInFlightAtKill: 0, adopted: 0, buried: 0, readyMs: [] };
  let d = spawnDaemon(dir, cfg);
  let c = await connect(dir, d, performance.now());
  try {
    for (let cycle = 0; cycle < cycles; cycle++) {
      // Load: random operations, not awaited, until the kill.
      const killAt = performance.now() + rand() * 400;
      const inFlight = new Set();
      while (performance.now() < killAt) {
        const op = ['start', 'stop', 'restart', 'start'][Math.floor(rand() * 4)];
        const acct = names[Math.floor(rand() * names.length)];
        const p = call(c, 'POST', `/bots/${acct}/${op}`).catch(() => undefined);
        inFlight.add(p);
        p.finally(() => inFlight.delete(p));
        await sleep(rand() * 25);
      }
      figures.requestsInFlightAtKill += inFlight.size;
      d.child.kill('SIGKILL');
      await d.exited;
      await Promise.allSettled([...inFlight]);

      const t0 = performance.now();
      d = spawnDaemon(dir, cfg);
      c = await connect(dir, d, t0);
      figures.readyMs.push(c.readyMs);
      await checkInvariants(c, dir, tag, names, figures, cycle);

      // Every adopted bot can be stopped; stop a random half so later cycles start from mixed states.
      for (const n of names) {
        if (rand() < 0.5) {
          const r = await call(c, 'POST', `/bots/${n}/stop`);
          if (r.status !== 200 || r.body.state !== 'stopped') throw new Error(`cycle ${cycle}: stop ${n} gave ${r.status} ${JSON.stringify(r.body)}`);
          if ((liveBots(tag).get(n) ?? []).length !== 0) throw new Error(`cycle ${cycle}: ${n} still has a process after stop`);
        }
      }
      figures.cycles++;
      log(`cycle ${cycle + 1}/${cycles} ok`);
    }
    // Finally stop everything through the API: all adopted bots must be stoppable.
    for (const n of names) {
      const r = await call(c, 'POST', `/bots/${n}/stop`);
      if (r.body.state !== 'stopped') throw new Error(`final stop ${n}: ${JSON.stringify(r.body)}`);
    }
    if (liveBots(tag).size !== 0) throw new Error('bots left after the final stop');
  } finally {
    d.child.kill('SIGKILL');
    await d.exited;
    const left = killTagged(tag);
    rmSync(dir, { recursive: true, force: true });
    if (left.length > 0) figures.leftBehind = left;
  }
  return figures;
}

async function checkInvariants(c, dir, tag, names, figures, cycle) {
  const fail = (msg) => {
    throw new Error(`cycle ${cycle} (seed ${figures.seed}): ${msg}`);
  };
  const procs = liveBots(tag);
  const bots = new Map((await call(c, 'GET', '/bots')).body.bots.map((b) => [b.account, b]));
  const db = new Database(path.join(dir, 'botwarden.db'), { readonly: true, fileMustExist: true });
  let locks;
  try {
    locks = db.prepare('SELECT account, pid FROM account_locks').all();
  } finally {
    db.close();
  }
  for (const n of names) {
    const pids = procs.get(n) ?? [];
    const bot = bots.get(n);
    // At most one process per account.
    if (pids.length > 1) fail(`${n} has ${pids.length} processes: ${pids.join(', ')}`);
    // Every live bot process is registered as running, with a lock on it.
    if (pids.length === 1) {
      if (bot.pid !== pids[0] || !['running', 'starting'].includes(bot.state)) fail(`${n}: live pid ${pids[0]} but bot says ${bot.state} pid ${bot.pid}`);
      if (bot.lock?.pid !== pids[0]) fail(`${n}: live pid ${pids[0]} without its lock (${JSON.stringify(bot.lock)})`);
      figures.adopted++;
    } else {
      // No `running` row without a live process.
      if (['running', 'starting', 'stopping'].includes(bot.state)) fail(`${n}: ${bot.state} without a live process`);
      figures.buried++;
    }
  }
  // No lock without a live process (a bot in backoff holds its account without one, by design).
  for (const l of locks) {
    const pids = procs.get(l.account) ?? [];
    const inBackoff = bots.get(l.account)?.state === 'backoff';
    if (l.pid === null ? !inBackoff : !pids.includes(l.pid)) fail(`lock of ${l.account} (pid ${l.pid}) without a live process`);
  }
}
