/**
 * Test helpers: real daemons on real data dirs and port 0, real bots from
 * fixtures, and a sweep that finds (and kills, by pid) anything a test left
 * behind, so a leak fails the test instead of lingering.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { parseConfig } from '../src/config/load.js';
import type { Config } from '../src/config/schema.js';
import { startDaemon, type Daemon, type DaemonOptions } from '../src/daemon.js';
import { isAlive } from '../src/host/procfs.js';
import { processesWith } from './procs.js';

export const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
export const ROOT = fileURLToPath(new URL('../', import.meta.url));

/** Every bot started by this test file carries this tag in its environment. */
export const TEST_TAG = `bwtest-${process.pid}-${Date.now()}`;

export function tmpDir(prefix = 'botwarden-'): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

export function fixture(name: string, extra: string[] = []): string[] {
  return ['node', path.join(FIXTURES, name), ...extra];
}

/**
 * Tests never reach an exchange: every preset's server-time source points at a closed local port
 * unless a test gives its own (a local server).
 */
export const LOCAL_TIME_SOURCES = Object.fromEntries(['kraken', 'binance', 'bybit', 'okx', 'kucoin', 'coinbase', 'bitfinex'].map((b) => [b, 'http://127.0.0.1:9/time']));

export function makeConfig(raw: { daemon?: object; keys?: object; lock?: object; alerts?: object; clock?: { sources?: Record<string, string> } & Record<string, unknown>; accounts: Record<string, Record<string, unknown>> }): Config {
  const accounts: Record<string, Record<string, unknown>> = {};
  for (const [id, a] of Object.entries(raw.accounts)) {
    accounts[id] = { ...a, env: { BW_TEST_TAG: TEST_TAG, ...((a.env) ?? {}) } };
  }
  // Tests must not turn degraded on a nearly full build machine: 1 MiB unless a test says otherwise.
  const clock = { ...(raw.clock ?? {}), sources: { ...LOCAL_TIME_SOURCES, ...(raw.clock?.sources ?? {}) } };
  return parseConfig({ ...raw, clock, daemon: { minFreeBytes: 1048576, ...(raw.daemon ?? {}) }, accounts }, { baseDir: FIXTURES });
}

export interface TestDaemon extends Daemon {
  dataDir: string;
  req(method: string, url: string, opts?: { body?: unknown; token?: string | null; headers?: Record<string, string> }): Promise<{ status: number; body: any; text: string }>;
  close(): Promise<void>;
}

export async function startTestDaemon(
  config: Config,
  opts: Partial<DaemonOptions> & { dataDir?: string } = {},
): Promise<TestDaemon> {
  const dataDir = opts.dataDir ?? tmpDir();
  const env = { ...process.env, BOTWARDEN_TOKEN: undefined };
  const d = await startDaemon({
    flags: { dataDir, listen: '127.0.0.1:0', config: path.join(dataDir, 'no-config.yaml'), ...(opts.flags ?? {}) },
    env,
    config,
    logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
    ...opts,
  });
  let closed = false;
  return Object.assign(d, {
    dataDir,
    async req(method: string, url: string, o: { body?: unknown; token?: string | null; headers?: Record<string, string> } = {}) {
      const headers: Record<string, string> = { ...(o.headers ?? {}) };
      const token = o.token === undefined ? d.token : o.token;
      if (token !== null) headers.authorization = `Bearer ${token}`;
      let body: string | undefined;
      if (o.body !== undefined) {
        body = typeof o.body === 'string' ? o.body : JSON.stringify(o.body);
        headers['content-type'] ??= 'application/json';
      }
      const res = await fetch(d.url + url, { method, headers, body });
      const text = await res.text();
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON (text/plain logs, an empty body)
      }
      return { status: res.status, body: parsed as any, text };
    },
    async close() {
      if (closed) return;
      closed = true;
      await d.shutdown('stop-bots');
    },
  });
}

/** Live processes carrying this test file's tag (optionally of one account); `full`: list all of /proc. */
export function taggedProcesses(account?: string, full = false): number[] {
  return processesWith('BW_TEST_TAG', TEST_TAG, { full })
    .filter((p) => p.pid !== process.pid && (account === undefined || p.env.get('BOTWARDEN_ACCOUNT') === account))
    .map((p) => p.pid);
}

/**
 * Watches one account's processes on a loop of its own, every `everyMs`, beside a test's slower
 * polls (a takeover polled with requests that can each take a while on a loaded machine): the most
 * processes of the account seen live at once, and when `pid` was first seen gone. stop() takes a
 * last sample, after whatever the test saw last.
 */
export function watchAccount(account: string, pid: number | null = null, everyMs = 10): { readonly max: number; readonly diedAt: number; stop(): Promise<void> } {
  let max = 0;
  let diedAt = 0;
  let on = true;
  const sample = () => {
    max = Math.max(max, taggedProcesses(account).length);
    if (pid !== null && !diedAt && !isAlive(pid, null)) diedAt = Date.now();
  };
  const loop = (async () => {
    while (on) {
      sample();
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    get max() {
      return max;
    },
    get diedAt() {
      return diedAt;
    },
    async stop() {
      on = false;
      await loop;
      sample();
    },
  };
}

/**
 * SIGKILLs the children a test started that still run, and waits until each has exited: a kill is
 * delivered asynchronously, and a sweep right after it could still see the process alive.
 */
export async function killChildren(children: ChildProcess[]): Promise<void> {
  const running = children.splice(0).filter((c) => c.exitCode === null && c.signalCode === null);
  const gone = running.map((c) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r()))));
  for (const c of running) c.kill('SIGKILL');
  await Promise.all(gone);
}

/** Kills (by pid) whatever this test file left behind and returns those pids: a test asserts it is empty. */
export function sweepLeftovers(): number[] {
  const left = taggedProcesses(undefined, true);
  for (const pid of left) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  return left;
}

export async function waitFor<T>(fn: () => T | Promise<T>, opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {}): Promise<NonNullable<T>> {
  const until = Date.now() + (opts.timeoutMs ?? 5000);
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${opts.what ?? 'condition'}`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 20));
  }
}

/** How many duplicate scans a daemon has made (its /health says it while no duplicate lives), or null. */
export async function scanCount(d: { req(method: string, url: string): Promise<{ body: any }> }): Promise<number | null> {
  const checks = ((await d.req('GET', '/health')).body?.checks ?? []) as { name: string; detail: string }[];
  const m = /(\d+) scans of/.exec(checks.find((c) => c.name === 'duplicates')?.detail ?? '');
  return m ? Number(m[1]) : null;
}

/**
 * Waits until a daemon has made `n` whole duplicate scans that began after the call (a scan under
 * way when it is called does not count): what "nothing happened over a few scans" waits for,
 * whatever the machine's load. Returns at once when a duplicate lives (no count shown): what the
 * test asserts next sees it.
 */
export async function afterScans(d: { req(method: string, url: string): Promise<{ body: any }> }, n: number, timeoutMs = 10_000): Promise<void> {
  const from = await scanCount(d);
  if (from === null) return;
  await waitFor(async () => {
    const now = await scanCount(d);
    return now === null || now >= from + n + 1;
  }, { timeoutMs, intervalMs: 25, what: `${n} more duplicate scans` });
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
