// Shared bench helpers: a real daemon process on a temp data dir, a tiny HTTP client, stats.
import { spawn } from 'node:child_process';
import http from 'node:http';
import { existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
 * of `windows` windows taken after `settleS` seconds.
 */
export async function steadyCpu(pids, { settleS = 45, windows = 3, windowS = 5 } = {}) {
  await sleep(settleS * 1000);
  const total = () => pids.reduce((s, p) => s + cpuNs(p), 0);
  const cpu = [];
  for (let i = 0; i < windows; i++) {
    const c0 = total();
    await sleep(windowS * 1000);
    cpu.push(((total() - c0) / 1e9 / windowS) * 100);
  }
  cpu.sort((a, b) => a - b);
  return { cpu: cpu[Math.floor(windows / 2)], range: `${cpu[0].toFixed(2)}-${cpu[windows - 1].toFixed(2)}` };
}
