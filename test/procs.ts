/**
 * The tests' own view of /proc: the live processes that carry a marker in their environment
 * (BW_TEST_TAG=..., CHAOS_RUN=...). Tests poll it every few ms while other test files (and, on a
 * shared machine, a thousand-bot bench) run beside them, so it reads as little as it can:
 *
 * - a process's environment is read once per identity: its start time (a reused pid is another
 *   process) and where its arguments and environment lie in its memory (an exec, which keeps pid
 *   and start time, puts them elsewhere: the spawner's fork becomes a bot);
 * - /proc is not listed at every call: the kernel's pid cursor (/proc/loadavg) says which pids were
 *   handed out since the call before, and a call reads those, and the processes it watches: the
 *   ones that carry a marker asked for, and this process's descendants (what may still exec into
 *   one). /proc is listed in full every FULL_EVERY calls, for a marker not asked for before, when
 *   the cursor cannot say, and when the caller asks (a sweep at the end of a test).
 *
 * A watched process's stat is read at every call: whether it lives, or is a zombie, is always fresh.
 */
import { closeSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs';

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
  /** A descendant of this process (when first seen). */
  descendant: boolean;
  /** Read at every call: a descendant, or one that carries a marker asked for. */
  watched: boolean;
}

const FULL_EVERY = 25;
/** How many calls a handed-out pid that is not in /proc yet is looked for again. */
const PENDING_CALLS = 3;

const BUF = Buffer.allocUnsafe(256 * 1024);
const known = new Map<number, Known>();
const needles = new Set<string>();
let cursor = -1;
let calls = 0;
let pending = new Map<number, number>();

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

/** The last pid the kernel handed out, or -1 when /proc/loadavg does not say. */
function lastPid(): number {
  try {
    const t = readFileSync('/proc/loadavg', 'latin1');
    const n = Number(t.slice(t.lastIndexOf(' ') + 1));
    return Number.isInteger(n) && n > 0 ? n : -1;
  } catch {
    return -1;
  }
}

/** A thread that is not its group's leader: its tid is in /proc, but it is no process. */
function isThread(pid: number): boolean {
  try {
    const m = /\nTgid:\s*(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
    return m !== null && Number(m[1]) !== pid;
  } catch {
    return false;
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

const marked = (environ: string | null) => environ !== null && [...needles].some((n) => environ.includes(n));

/** The pids a call reads, and those handed out since the call before (null: /proc listed). */
function candidates(full: boolean): { pids: Iterable<number>; fresh: Set<number> | null } {
  const last = lastPid();
  const before = cursor;
  cursor = last;
  if (!full && last > 0 && before > 0 && last >= before && last - before <= 20_000) {
    const fresh = new Set(pending.keys());
    for (let p = before + 1; p <= last; p++) fresh.add(p);
    const pids = new Set(fresh);
    for (const [pid, k] of known) if (k.watched) pids.add(pid);
    return { pids, fresh };
  }
  pending = new Map();
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const c = entry.charCodeAt(0);
    if (c >= 48 && c <= 57) pids.push(Number(entry));
  }
  return { pids, fresh: null };
}

/** Live processes (no zombies) whose environment holds `name=value`. `full`: list all of /proc. */
export function processesWith(name: string, value: string, opts: { full?: boolean } = {}): LiveProc[] {
  const needle = `\0${name}=${value}\0`;
  const newNeedle = !needles.has(needle);
  needles.add(needle);
  const { pids, fresh } = candidates(opts.full === true || newNeedle || calls++ % FULL_EVERY === 0);
  const out: LiveProc[] = [];
  const listed = fresh === null ? new Set<number>() : null;
  const nextPending = new Map<number, number>();
  for (const pid of pids) {
    listed?.add(pid);
    const isFresh = fresh !== null && fresh.has(pid);
    const n = readStat(pid);
    if (n < 0) {
      known.delete(pid);
      if (isFresh) {
        const left = pending.get(pid) ?? PENDING_CALLS;
        if (left > 1) nextPending.set(pid, left - 1);
      }
      continue;
    }
    if (isFresh && isThread(pid)) continue;
    const stat = BUF.toString('latin1', 0, n);
    // comm may hold spaces and parentheses: the fields start after the last ')'; field N is f[N - 3].
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ', 49);
    const state = f[0]!;
    if (state === 'Z' || state === 'X') {
      known.delete(pid);
      continue;
    }
    const ppid = Number(f[1]);
    const identity = `${f[19]}:${f[45]}:${f[46]}:${f[47]}:${f[48]}`;
    let k = isFresh ? undefined : known.get(pid);
    if (!k || k.identity !== identity) {
      const m = read(`/proc/${pid}/environ`);
      const environ = m < 0 ? null : `\0${BUF.toString('utf8', 0, m)}`;
      // Sticky: a descendant stays watched once its parent is gone (a bot of a SIGKILLed daemon).
      const descendant = k?.descendant === true || ppid === process.pid || known.get(ppid)?.descendant === true;
      k = { identity, environ, descendant, watched: descendant || marked(environ) };
      known.set(pid, k);
    } else if (newNeedle && !k.watched) k.watched = marked(k.environ);
    if (k.environ === null || !k.environ.includes(needle)) continue;
    k.env ??= parseEnv(k.environ);
    out.push({ pid, state, ppid, startTicks: Number(f[19]), env: k.env });
  }
  if (listed) for (const pid of known.keys()) if (!listed.has(pid)) known.delete(pid);
  pending = nextPending;
  return out;
}
