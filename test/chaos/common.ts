/**
 * What both chaos walks (SQLite and PostgreSQL mode) share: the seeded PRNG, /proc reading, the
 * sampler process, and daemons run as real processes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { setPriority } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { processesWith } from '../procs.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = path.join(ROOT, 'dist', 'cli.js');
export const BOT = path.join(ROOT, 'test', 'fixtures', 'chaos-bot.js');
const SAMPLER = path.join(ROOT, 'test', 'fixtures', 'chaos-sampler.mjs');

/** mulberry32: a seeded PRNG, so a failing walk replays step for step. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** What a walk tells: its seed and steps, what broke, and how well the sampler kept up. */
export interface WalkResult {
  seed: number;
  steps: string[];
  violations: string[];
  samples: number;
  maxGapMs: number;
  /** Samples that came more than 10 ms after the one before (a starved sampler). */
  over10: number;
  ms: number;
}

export interface Proc {
  pid: number;
  start: string;
  env: Map<string, string>;
}

export function stat(pid: number): { state: string; ppid: number; start: string } | null {
  try {
    const t = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const f = t.slice(t.lastIndexOf(')') + 2).split(' ');
    return { state: f[0]!, ppid: Number(f[1]), start: f[19]! };
  } catch {
    return null;
  }
}

export function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1');
  } catch {
    return '';
  }
}

export function kill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone already
  }
}

/** Live processes of this run (CHAOS_RUN=tag in their environment). */
export function runProcesses(tag: string): Proc[] {
  return processesWith('CHAOS_RUN', tag).map((p) => ({ pid: p.pid, start: String(p.startTicks), env: p.env }));
}

export interface SamplerStats {
  samples: number;
  maxGapMs: number;
  over10: number;
}

export interface Sampler {
  pid: number;
  stats(): Promise<SamplerStats>;
  close(): Promise<void>;
}

/** Starts the sampler process; every violation it prints goes to `onViolation`. */
export async function startSampler(tag: string, keyValues: string[], onViolation: (line: string) => void): Promise<Sampler> {
  const child = spawn(process.execPath, [SAMPLER, tag, JSON.stringify(keyValues)], { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    // Ahead of the daemons and bots it watches, where allowed (root): a starved sampler misses instants.
    setPriority(child.pid!, -10);
  } catch {
    // not root: it runs at the default priority
  }
  let last: SamplerStats = { samples: 0, maxGapMs: 0, over10: 0 };
  let waiting: ((s: SamplerStats) => void) | null = null;
  await new Promise<void>((ready) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = JSON.parse(line) as { ready?: boolean; stats?: SamplerStats };
      if (m.ready) return ready();
      if (m.stats) {
        last = m.stats;
        waiting?.(last);
        waiting = null;
      } else onViolation(line);
    });
  });
  return {
    pid: child.pid!,
    stats: () =>
      Promise.race([
        new Promise<SamplerStats>((resolve) => {
          waiting = resolve;
          child.stdin.write('stats\n');
        }),
        sleep(2000).then(() => last),
      ]),
    async close() {
      child.stdin.end();
      if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
    },
  };
}

export interface DaemonProc {
  child: ChildProcess;
  stderr: string;
  url: string;
  token: string;
  dataDir: string;
}

/** A daemon as a real process on `dataDir`; resolves once it serves. */
export async function startDaemonProc(dataDir: string, configFile: string, env: NodeJS.ProcessEnv): Promise<DaemonProc> {
  // CHAOS_LOGDIR=<dir>: each daemon's log (info) in a file there, for a failure's story.
  const logDir = process.env.CHAOS_LOGDIR;
  const out = logDir ? openSync(path.join(logDir, `${path.basename(dataDir)}.log`), 'a') : 'ignore';
  const child = spawn(process.execPath, [CLI, 'daemon', '--data-dir', dataDir, '--config', configFile, '--listen', '127.0.0.1:0'], {
    env: { ...process.env, ...env, BOTWARDEN_TOKEN: '', BOTWARDEN_LOG_LEVEL: logDir ? 'info' : 'warn' },
    stdio: ['ignore', out, 'pipe'],
  });
  if (typeof out === 'number') closeSync(out);
  const d: DaemonProc = { child, stderr: '', url: '', token: '', dataDir };
  child.stderr!.on('data', (c: Buffer) => (d.stderr = (d.stderr + c.toString()).slice(-20_000)));
  const until = performance.now() + 30_000;
  for (;;) {
    const info = path.join(dataDir, 'daemon.json');
    if (existsSync(info)) {
      try {
        const j = JSON.parse(readFileSync(info, 'utf8')) as { pid: number; url: string };
        if (j.pid === child.pid) {
          d.url = j.url;
          d.token = readFileSync(path.join(dataDir, 'api-token'), 'utf8').trim();
          return d;
        }
      } catch {
        // being written
      }
    }
    if (child.exitCode !== null) throw new Error(`daemon exited at boot: ${d.stderr}`);
    if (performance.now() > until) throw new Error(`daemon did not come up: ${d.stderr}`);
    await sleep(10);
  }
}

export async function call(d: DaemonProc | null, method: string, url: string, body?: unknown, timeoutMs = 30_000): Promise<{ status: number; body: any }> {
  if (!d) return { status: 0, body: null };
  try {
    const res = await fetch(d.url + url, {
      method,
      headers: { authorization: `Bearer ${d.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  } catch {
    return { status: 0, body: null };
  }
}
