/**
 * The tests' own view of /proc: the live processes that carry a marker in their environment
 * (BW_TEST_TAG=..., CHAOS_RUN=...). Tests poll it every few ms while other test files run beside
 * them, so a process's environment is read once, not at every call: it is kept under the
 * process's identity as /proc/<pid>/stat tells it, its start time (a reused pid is another
 * process) and where its arguments and environment lie in its memory (an exec, which keeps pid
 * and start time, puts them elsewhere: the spawner's fork becomes a bot). Every call still lists
 * /proc and reads each process's stat, so what is alive, and whether it is a zombie, is always read
 * fresh.
 */
import { closeSync, openSync, readdirSync, readSync } from 'node:fs';

export interface LiveProc {
  pid: number;
  /** R, S, D, T, ... (zombies and dead processes are never listed). */
  state: string;
  ppid: number;
  /** Start time in clock ticks since boot (stat field 22): with the pid, the identity. */
  startTicks: number;
  /** The environment at exec, read once per identity. */
  env: Map<string, string>;
}

interface Known {
  identity: string;
  /** null: unreadable (a kernel thread, a process not ours to read). */
  environ: string | null;
  env?: Map<string, string>;
}

const BUF = Buffer.allocUnsafe(256 * 1024);
const known = new Map<number, Known>();

/** A /proc file into BUF; its length, or -1 when it cannot be read. */
function read(file: string): number {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return -1;
  }
  try {
    let n = 0;
    for (;;) {
      const got = readSync(fd, BUF, n, BUF.length - n, null);
      if (got <= 0 || n + got >= BUF.length) return n + Math.max(0, got);
      n += got;
    }
  } catch {
    return -1;
  } finally {
    closeSync(fd);
  }
}

/** /proc/<pid>/stat into BUF: one read (the kernel makes the whole line at once); its length, or -1. */
function readStat(pid: number): number {
  let fd: number;
  try {
    fd = openSync(`/proc/${pid}/stat`, 'r');
  } catch {
    return -1;
  }
  try {
    return readSync(fd, BUF, 0, 4096, null);
  } catch {
    return -1;
  } finally {
    closeSync(fd);
  }
}

function parseEnv(environ: string): Map<string, string> {
  const env = new Map<string, string>();
  for (const kv of environ.split('\0')) {
    const eq = kv.indexOf('=');
    if (eq > 0) env.set(kv.slice(0, eq), kv.slice(eq + 1));
  }
  return env;
}

/** Live processes (no zombies) whose environment holds `name=value`. */
export function processesWith(name: string, value: string): LiveProc[] {
  const needle = `\0${name}=${value}\0`;
  const out: LiveProc[] = [];
  const listed = new Set<number>();
  for (const entry of readdirSync('/proc')) {
    const c = entry.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    const pid = Number(entry);
    listed.add(pid);
    const n = readStat(pid);
    if (n < 0) continue;
    const stat = BUF.toString('latin1', 0, n);
    // comm may hold spaces and parentheses: the fields start after the last ')'; field N is f[N - 3].
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ', 49);
    const state = f[0]!;
    if (state === 'Z' || state === 'X') continue;
    const identity = `${f[19]}:${f[45]}:${f[46]}:${f[47]}:${f[48]}`;
    let k = known.get(pid);
    if (!k || k.identity !== identity) {
      const m = read(`/proc/${pid}/environ`);
      k = { identity, environ: m < 0 ? null : `\0${BUF.toString('utf8', 0, m)}` };
      known.set(pid, k);
    }
    if (k.environ === null || !k.environ.includes(needle)) continue;
    k.env ??= parseEnv(k.environ);
    out.push({ pid, state, ppid: Number(f[1]), startTicks: Number(f[19]), env: k.env });
  }
  for (const pid of known.keys()) if (!listed.has(pid)) known.delete(pid);
  return out;
}
