/** Running the built daemon (dist/cli.js) as a real process, as an operator would. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { isAlive } from '../src/host/procfs.js';
import { LOCAL_TIME_SOURCES, ROOT, TEST_TAG, waitFor } from './helper.js';

export const CLI = path.join(ROOT, 'dist', 'cli.js');

export function writeConfig(dir: string, raw: { daemon?: object; keys?: object; lock?: object; alerts?: object; clock?: object; accounts: Record<string, Record<string, unknown>> }, name = "botwarden.yaml"): string {
  const accounts: Record<string, Record<string, unknown>> = {};
  for (const [id, a] of Object.entries(raw.accounts)) accounts[id] = { ...a, env: { BW_TEST_TAG: TEST_TAG, ...((a.env) ?? {}) } };
  const file = path.join(dir, name);
  writeFileSync(file, stringify({ ...raw, clock: { sources: LOCAL_TIME_SOURCES, ...(raw.clock ?? {}) }, daemon: { minFreeBytes: 1048576, ...(raw.daemon ?? {}) }, accounts }));
  return file;
}

export interface DaemonProc {
  child: ChildProcess;
  pid: number;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: string | null }>;
}

const started: ChildProcess[] = [];

export function spawnDaemon(dataDir: string, configFile: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}): DaemonProc {
  const child = spawn(process.execPath, [CLI, 'daemon', '--data-dir', dataDir, '--config', configFile, '--listen', '127.0.0.1:0', ...extra], {
    env: { ...process.env, BOTWARDEN_TOKEN: '', BOTWARDEN_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  started.push(child);
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return { child, pid: child.pid!, stderr: () => err, exited };
}

/** Waits until the daemon wrote its address file, and returns a small client for it. */
export async function connectTo(dataDir: string, pid: number) {
  const info = await waitFor(
    () => {
      const f = path.join(dataDir, 'daemon.json');
      if (!existsSync(f)) return null;
      try {
        const j = JSON.parse(readFileSync(f, 'utf8')) as { pid: number; url: string };
        return j.pid === pid ? j : null;
      } catch {
        return null;
      }
    },
    { timeoutMs: 10_000, what: `daemon ${pid} listening` },
  );
  const token = readFileSync(path.join(dataDir, 'api-token'), 'utf8').trim();
  return {
    url: info.url,
    async req(method: string, url: string, body?: unknown) {
      const res = await fetch(info.url + url, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, body: text ? (JSON.parse(text)) : undefined };
    },
  };
}

/** Kills (by pid) every daemon this file started that still runs. */
export function killDaemons(): void {
  for (const c of started.splice(0)) {
    if (c.exitCode === null && c.signalCode === null && c.pid !== undefined && isAlive(c.pid, null)) c.kill('SIGKILL');
  }
}

export function removeDataDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
