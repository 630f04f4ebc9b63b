// Shared bench helpers: a real daemon process on a temp data dir, a tiny HTTP client, stats.
import { spawn } from 'node:child_process';
import http from 'node:http';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const BOT = path.join(ROOT, 'test', 'fixtures', 'bot.js');
export const now = () => performance.timeOrigin + performance.now();

export function tmp(prefix = 'bw-bench-') {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

export function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
  return { n: s.length, min: s[0], p50: q(50), p95: q(95), p99: q(99), max: s[s.length - 1] };
}

export const fmt = (ms) => `${ms.toFixed(1)} ms`;

export async function waitFile(file, timeoutMs = 10_000) {
  const until = Date.now() + timeoutMs;
  while (!existsSync(file) || readFileSync(file, 'utf8') === '') {
    if (Date.now() > until) throw new Error(`timeout waiting for ${file}`);
    await sleep(1);
  }
  return Number(readFileSync(file, 'utf8'));
}

/**
 * Node's flags for the daemon: those `npm start` uses (the daemon as shipped, e.g. its young
 * generation size), or BENCH_NODE_ARGS (profiling: `--cpu-prof ...`) instead.
 */
export function nodeArgs() {
  if (process.env.BENCH_NODE_ARGS !== undefined) return process.env.BENCH_NODE_ARGS.split(' ').filter(Boolean);
  const start = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).scripts.start;
  return start.split(' ').filter((a) => a.startsWith('--'));
}

/** Starts the built daemon with these accounts; returns a client and a stop function. */
export async function startDaemon(accounts, extraArgs = [], daemonCfg = {}, dataDir = null, extraCfg = {}) {
  const dir = dataDir ?? tmp();
  const cfgFile = path.join(dir, 'botwarden.yaml');
  writeFileSync(cfgFile, JSON.stringify({ daemon: daemonCfg, ...extraCfg, accounts })); // JSON is YAML
  const child = spawn(process.execPath, [...nodeArgs(), path.join(ROOT, 'dist', 'cli.js'), 'daemon', '--data-dir', dir, '--config', cfgFile, '--listen', '127.0.0.1:0', ...extraArgs], {
    env: { ...process.env, BOTWARDEN_TOKEN: '', BOTWARDEN_LOG_LEVEL: 'warn' },
    stdio: ['ignore', process.env.BENCH_DAEMON_STDOUT ? openSync(process.env.BENCH_DAEMON_STDOUT, 'a') : 'ignore', 'inherit'],
  });
  const info = path.join(dir, 'daemon.json');
  const until = Date.now() + 15_000;
  for (;;) {
    if (existsSync(info)) {
      try {
        const j = JSON.parse(readFileSync(info, 'utf8'));
        if (j.pid === child.pid) break;
      } catch {}
    }
    if (Date.now() > until) throw new Error('daemon did not start');
    await sleep(5);
  }
  const { url } = JSON.parse(readFileSync(info, 'utf8'));
  const token = readFileSync(path.join(dir, 'api-token'), 'utf8').trim();
  const req = async (method, p, body) => {
    const res = await fetch(url + p, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    let parsed;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = text; // text/plain (metrics, logs)
    }
    return { status: res.status, body: parsed };
  };
  // A lean keep-alive client for load: fetch's own per-request cost would dominate the figures.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const u = new URL(url);
  const fast = (method, p) =>
    new Promise((resolve, reject) => {
      const r = http.request({ host: u.hostname, port: u.port, path: p, method, agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode, body: body ? JSON.parse(body) : undefined }));
      });
      r.on('error', reject);
      r.end();
    });
  const exited = new Promise((r) => child.once('exit', r));
  return {
    dir,
    pid: child.pid,
    child,
    req,
    fast,
    async stop(signal = 'SIGTERM') {
      agent.destroy();
      child.kill(signal);
      await exited;
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** CPU time of a process, all its threads, in ns: /proc/<pid>/task/<tid>/schedstat (no 10 ms ticks). */
export function cpuNs(pid) {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'latin1').split(' ')[0]);
    } catch {
      // the thread ended meanwhile
    }
  }
  return ns;
}

/** The daemon's spawner (the parent of its bots), or undefined. */
export function spawnerPid(daemonPid) {
  const kids = readFileSync(`/proc/${daemonPid}/task/${daemonPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  return kids.find((k) => {
    try {
      return readFileSync(`/proc/${k}/cmdline`, 'utf8').includes('spawner.js');
    } catch {
      return false;
    }
  });
}

/**
 * Idle CPU as `top` shows it after a while, in % of one core, summed over `pids`. A burst of starts
 * is followed by V8's memory reducer (full collections 10-40 s later), so the figure is the median
 * of `windows` windows taken after `settleS` seconds. `onSettled()` runs once the settling is over,
 * before the first window; its result comes back as `settled`.
 */
export async function steadyCpu(pids, { settleS = 45, windows = 3, windowS = 5, onSettled } = {}) {
  await sleep(settleS * 1000);
  // What is read at this point (memory, 45 s after the starts) is read before the CPU windows.
  const settled = onSettled?.();
  const total = () => pids.reduce((s, p) => s + cpuNs(p), 0);
  const cpu = [];
  for (let i = 0; i < windows; i++) {
    const c0 = total();
    await sleep(windowS * 1000);
    cpu.push(((total() - c0) / 1e9 / windowS) * 100);
  }
  cpu.sort((a, b) => a - b);
  return { cpu: cpu[Math.floor(windows / 2)], range: `${cpu[0].toFixed(2)}-${cpu[windows - 1].toFixed(2)}`, settled };
}

/** Fields of /proc/<pid>/smaps_rollup, in kB. */
function rollup(pid) {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
  return { rss: kb('Rss'), pss: kb('Pss') };
}

/** The page frames a process has resident (from /proc/<pid>/pagemap), or null when frame numbers are hidden (no CAP_SYS_ADMIN). */
function frames(pid) {
  const out = new Set();
  const buf = Buffer.alloc(8 * 4096);
  let fd;
  try {
    fd = openSync(`/proc/${pid}/pagemap`, 'r');
  } catch {
    return null;
  }
  try {
    // Only the mappings with resident pages (a Node process reserves gigabytes it never touches).
    const smaps = readFileSync(`/proc/${pid}/smaps`, 'utf8');
    const re = /^([0-9a-f]+)-([0-9a-f]+) [^\n]*\n(?:[^\n]*\n)*?Rss:\s+(\d+) kB/gm;
    for (let m; (m = re.exec(smaps)); ) {
      if (m[3] === '0') continue;
      let page = parseInt(m[1], 16) / 4096;
      const end = parseInt(m[2], 16) / 4096;
      while (page < end) {
        const n = Math.min(4096, end - page);
        const got = readSync(fd, buf, 0, n * 8, page * 8);
        for (let i = 0; i < got / 8; i++) {
          const hi = buf.readUInt32LE(i * 8 + 4);
          if (hi >>> 31 === 0) continue; // not present
          const pfn = (hi & 0x7fffff) * 2 ** 32 + buf.readUInt32LE(i * 8);
          if (pfn === 0) return null; // frame numbers hidden from us
          out.add(pfn);
        }
        page += n;
      }
    }
  } catch {
    // the process ended meanwhile
  } finally {
    closeSync(fd);
  }
  return out;
}

/**
 * Memory of a daemon and its helpers (the spawner; PostgreSQL mode's watchdog), in MB, per process
 * and summed: RSS, and PSS (`Pss` of /proc/<pid>/smaps_rollup: a page shared by n processes counts
 * 1/n in each, so the Node binary's pages shared by the daemon and the spawner count once in the sum).
 *
 * The kernel's PSS splits a page among every process of the machine that maps it: the Node binary's
 * pages among the daemon, its spawner, this bench and any other Node process running meanwhile (a
 * test run), so it reads lower on a busy machine. `quiet` is the same sum computed as if only the
 * daemon, its helpers and `sharers` (this bench process by default) ran, from the page frames of
 * each (/proc/<pid>/pagemap); `alone` as if only the daemon and its helpers ran (nothing to share
 * the Node binary with: the most they can be billed). Both null when frame numbers cannot be read.
 */
export function memory(daemonPid, sharers = [process.pid]) {
  const kids = (pid) => {
    try {
      return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return [];
    }
  };
  const cmd = (pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      return '';
    }
  };
  const procs = [{ name: 'daemon', pid: daemonPid }];
  for (const k of kids(daemonPid)) {
    if (cmd(k).includes('spawner.js')) procs.push({ name: 'spawner', pid: k });
    else if (cmd(k).includes('watchdog.js')) procs.push({ name: 'watchdog', pid: k });
    for (const g of kids(k)) if (cmd(g).includes('watchdog.js')) procs.push({ name: 'watchdog', pid: g });
  }
  const mb = (kb) => kb / 1024;
  for (const p of procs) {
    const r = rollup(p.pid);
    Object.assign(p, { rss: mb(r.rss), pss: mb(r.pss) });
  }
  const own = procs.map((p) => frames(p.pid));
  const others = sharers.map(frames);
  let quiet = null;
  let alone = null;
  if (!own.includes(null) && !others.includes(null)) {
    const count = (sets, f) => sets.reduce((n, s) => n + (s.has(f) ? 1 : 0), 0);
    const seen = new Set();
    quiet = 0;
    procs.forEach((p, i) => {
      p.quiet = 0;
      for (const f of own[i]) {
        const g = count(own, f);
        p.quiet += 4 / (g + count(others, f));
        seen.add(f);
      }
      p.quiet = mb(p.quiet);
      quiet += p.quiet;
    });
    alone = mb(seen.size * 4);
  }
  return { procs, pss: procs.reduce((s, p) => s + p.pss, 0), quiet, alone };
}

/** One line: `PSS 73.1 MB (daemon 54.0 + spawner 19.1); on a quiet machine 75.0 (...); alone 93.0 — RSS daemon 87, spawner 46 MB`. */
export function fmtMemory(m) {
  const each = (k) => m.procs.map((p) => `${p.name} ${p[k].toFixed(1)}`).join(' + ');
  const quiet = m.quiet === null ? '' : `; on a quiet machine ${m.quiet.toFixed(1)} (${each('quiet')}); alone ${m.alone.toFixed(1)}`;
  return `PSS ${m.pss.toFixed(1)} MB (${each('pss')})${quiet} — RSS ${m.procs.map((p) => `${p.name} ${p.rss.toFixed(0)}`).join(', ')} MB`;
}
