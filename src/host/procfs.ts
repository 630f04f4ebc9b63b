/**
 * Process facts straight from /proc (Linux). A pid alone is not an identity:
 * the kernel reuses pids, so a process is (pid, start time in clock ticks).
 * Linux only: the daemon refuses to start without /proc (daemon.ts).
 */
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, readdirSync, readSync } from 'node:fs';

export interface ProcStat {
  pid: number;
  comm: string;
  /** R, S, D, Z (zombie), X (dead), T, ... */
  state: string;
  ppid: number;
  pgid: number;
  sid: number;
  startTicks: number;
  /** utime + stime in clock ticks, and resident pages (fields 14, 15, 24): a tree's usage (SPEC 16). */
  cpuTicks: number;
  rssPages: number;
}

// One shared buffer and plain open/read/close: readFileSync's fstat and allocations
// made a scan of /proc cost about twice as much.
const BUF = Buffer.allocUnsafe(256 * 1024);

/**
 * Why the last readProcFile failed: true when the process does not exist (ENOENT, ESRCH), false
 * for anything else (EMFILE, EACCES, ...), which says nothing about the process.
 */
let lastReadGone = true;

/** Only "no such file" and "no such process" mean a process is gone (SPEC 14.4). */
export function isGoneError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOENT' || code === 'ESRCH';
}

/** Reads a small /proc file into the shared buffer; returns its length, or -1 when unreadable. */
function readProcFile(file: string): number {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    lastReadGone = isGoneError(err);
    return -1;
  }
  try {
    let n = 0;
    for (;;) {
      const got = readSync(fd, BUF, n, BUF.length - n, null);
      if (got <= 0 || n + got >= BUF.length) return n + Math.max(0, got);
      n += got;
    }
  } catch (err) {
    lastReadGone = isGoneError(err);
    return -1;
  } finally {
    closeSync(fd);
  }
}

/** A small /proc text file (cmdline, ...) read through the shared buffer; null when unreadable. */
export function readProcText(file: string, encoding: BufferEncoding = 'utf8'): string | null {
  const n = readProcFile(file);
  return n < 0 ? null : BUF.toString(encoding, 0, n);
}

export function readStat(pid: number): ProcStat | null {
  const n = readProcFile(`/proc/${pid}/stat`);
  return n < 0 ? null : parseStat(BUF.toString('latin1', 0, n));
}

/** Parses /proc/<pid>/stat; comm may hold spaces and parentheses, so split after the last ')'. */
export function parseStat(text: string): ProcStat | null {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  const f = text.slice(close + 2).split(' ');
  // f[0] is field 3 (state); field N is f[N - 3].
  const startTicks = Number(f[19]);
  if (!Number.isFinite(startTicks)) return null;
  return {
    pid: Number(text.slice(0, open).trim()),
    comm: text.slice(open + 1, close),
    state: f[0] ?? '?',
    ppid: Number(f[1]),
    pgid: Number(f[2]),
    sid: Number(f[3]),
    startTicks,
    cpuTicks: Number(f[11]) + Number(f[12]),
    rssPages: Number(f[21]),
  };
}

export function startTicksOf(pid: number): number | null {
  return readStat(pid)?.startTicks ?? null;
}

/**
 * True when the process with this identity is alive: it exists, is not a
 * zombie (kill(pid, 0) says yes to zombies) and, when known, started at the
 * recorded time (so a reused pid is not taken for it).
 */
export function isAlive(pid: number, startTicks: number | null): boolean {
  const st = readStat(pid);
  // A read that failed for another reason than "no such process" (EMFILE, EACCES) proves
  // nothing: the process counts as alive, so no lock is ever released on a guess (SPEC 14.4).
  if (!st) return !lastReadGone;
  if (st.state === 'Z' || st.state === 'X') return false;
  return startTicks === null || st.startTicks === startTicks;
}

export function listPids(): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    const c = name.charCodeAt(0);
    if (c >= 48 && c <= 57) out.push(Number(name));
  }
  return out;
}

/** The process's environment as a map, or null when unreadable (gone, or another user's). */
export function readEnviron(pid: number): Map<string, string> | null {
  const n = readProcFile(`/proc/${pid}/environ`);
  if (n < 0) return null;
  const env = new Map<string, string>();
  for (const entry of BUF.toString('utf8', 0, n).split('\0')) {
    const eq = entry.indexOf('=');
    if (eq > 0) env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return env;
}

/** Only the value of one variable, without building the whole map. */
export function environValue(pid: number, name: string): string | null | undefined {
  const len = readProcFile(`/proc/${pid}/environ`);
  if (len < 0) return undefined; // unreadable
  const buf = BUF.subarray(0, len);
  const needle = Buffer.from(`${name}=`);
  let at = 0;
  while (at < buf.length) {
    const end = buf.indexOf(0, at);
    const stop = end < 0 ? buf.length : end;
    if (stop - at >= needle.length && buf.compare(needle, 0, needle.length, at, at + needle.length) === 0) {
      return buf.toString('utf8', at + needle.length, stop);
    }
    at = stop + 1;
  }
  return null;
}

/** The values of a few variables from one read of the environment; undefined when unreadable. */
export function environValues<K extends string>(pid: number, names: readonly K[]): Record<K, string | null> | undefined {
  const len = readProcFile(`/proc/${pid}/environ`);
  if (len < 0) return undefined;
  const out = {} as Record<K, string | null>;
  for (const name of names) out[name] = null;
  const buf = BUF.subarray(0, len);
  const needles = names.map((n) => Buffer.from(`${n}=`));
  let at = 0;
  while (at < buf.length) {
    const end = buf.indexOf(0, at);
    const stop = end < 0 ? buf.length : end;
    for (let i = 0; i < needles.length; i++) {
      const needle = needles[i]!;
      if (stop - at >= needle.length && buf.compare(needle, 0, needle.length, at, at + needle.length) === 0) out[names[i]!] = buf.toString('utf8', at + needle.length, stop);
    }
    at = stop + 1;
  }
  return out;
}

/** The most recently handed-out pid (last field of /proc/loadavg, "running/total lastpid"); -1 if unknown. */
export function lastPid(): number {
  const text = readProcText('/proc/loadavg', 'latin1');
  const n = text === null ? NaN : Number(text.slice(text.lastIndexOf(' ') + 1));
  return Number.isInteger(n) ? n : -1;
}

let lastPidChecked: boolean | null = null;

/**
 * Some containers serve a made-up /proc/loadavg: checked once per daemon that creating a process
 * (a `/bin/sh -c :`, reaped at once) moves its last pid. If not, nothing relies on it.
 */
export function lastPidWorks(): boolean {
  if (lastPidChecked === null) {
    const before = lastPid();
    // /bin/sh exists wherever Linux does (NixOS has no /bin/true).
    const r = before < 0 ? null : spawnSync('/bin/sh', ['-c', ':'], { stdio: 'ignore', timeout: 5000 });
    lastPidChecked = r !== null && !r.error && r.pid > 0 && lastPid() !== before;
  }
  return lastPidChecked;
}

/** The kernel's pid cursor at a moment: pids are handed out upward from it, wrapping at pid_max. */
export interface PidMark {
  last: number;
  at: number;
}

/**
 * Within this long of a mark, a pid outside (mark, now] (cyclically) cannot have been handed out
 * since: going all the way round takes pid_max (32,768 at least) process creations.
 */
const PID_MARK_TRUST_MS = 2000;

export function pidMark(now = performance.now()): PidMark | null {
  if (!lastPidWorks()) return null;
  const last = lastPid();
  return last < 0 ? null : { last, at: now };
}

/**
 * Was `pid` handed out between the two marks (a new process, or a re-used pid)? Null when that
 * cannot be told: a mark is missing, or they are too far apart.
 */
export function handedOutBetween(pid: number, before: PidMark | null, now: PidMark | null): boolean | null {
  if (!before || !now || now.at - before.at > PID_MARK_TRUST_MS) return null;
  const { last: a } = before;
  const { last: b } = now;
  if (a === b) return false;
  return a < b ? pid > a && pid <= b : pid > a || pid <= b;
}

/**
 * One pass over /proc shared by every caller within SNAPSHOT_MS: a shutdown stopping 1,000 bots
 * at once looks for their trees together, instead of 1,000 passes of 1,000 processes each. The
 * pass only *discovers* members; each one found is re-read before it is returned, so a member
 * that died since the pass is never reported alive. The BOTWARDEN_INSTANCE marker is read once
 * per process (pid + start time) and remembered. A pass reads the stat of only the pids handed
 * out since the last one (the kernel's pid cursor says which), and none when no pid was: a
 * shutdown of 1,000 bots no longer reads 1,000 stat files ten times a second.
 */
const SNAPSHOT_MS = 100;
let snap: { at: number; mark: PidMark | null; list: ProcStat[]; byPid: Map<number, ProcStat>; ix: PassIndex } | null = null;
const markers = new Map<string, string | null>();

function snapshot(maxAgeMs = SNAPSHOT_MS): PassIndex {
  const now = performance.now();
  if (snap && now - snap.at < maxAgeMs) return snap.ix;
  const mark = pidMark(now);
  const prev = snap;
  if (prev && mark && prev.mark?.last === mark.last && now - prev.mark.at <= PID_MARK_TRUST_MS) {
    // No process was created: the last pass still lists every process there is (some maybe gone,
    // which the re-read of each member catches).
    snap = { ...prev, at: now, mark };
    return prev.ix;
  }
  const list: ProcStat[] = [];
  const byPid = new Map<number, ProcStat>();
  const self = process.pid;
  for (const pid of listPids()) {
    if (pid === self) continue;
    const known = prev?.byPid.get(pid);
    const st = known && handedOutBetween(pid, prev!.mark, mark) === false ? known : readStat(pid);
    if (st && st.state !== 'Z' && st.state !== 'X') {
      list.push(st);
      byPid.set(pid, st);
    }
  }
  if (markers.size > list.length * 2) {
    const live = new Set(list.map((st) => `${st.pid}:${st.startTicks}`));
    for (const k of markers.keys()) if (!live.has(k)) markers.delete(k);
  }
  snap = { at: now, mark, list, byPid, ix: new PassIndex(list) };
  return snap.ix;
}

/**
 * The next snapshot() must look again: it re-lists /proc unless the kernel's pid cursor says no
 * process was created since the last pass (then that pass still lists every process there is).
 */
function revalidate(): void {
  if (snap) snap.at = -Infinity;
}

let freshPending: Promise<void> | null = null;

/**
 * Resolves once the pass is one begun after this call. Callers in one turn of the event loop (a
 * shutdown of 1,000 bots whose trees looked empty together) share it: one re-validation, not 1,000.
 */
export function freshPass(): Promise<void> {
  freshPending ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
    freshPending = null;
    revalidate();
  });
  return freshPending;
}

function instanceMarker(st: ProcStat): string | null {
  const k = `${st.pid}:${st.startTicks}`;
  let v = markers.get(k);
  if (v === undefined) {
    v = environValue(st.pid, 'BOTWARDEN_INSTANCE') ?? null;
    markers.set(k, v);
  }
  return v;
}

/**
 * Lookups into one pass, so that 1,000 stops sharing it cost O(processes) together, not each:
 * members by process group, and by instance marker. Markers are read only for processes at least
 * as young as the oldest instance asked about (descendants start after their bot), youngest first.
 */
class PassIndex {
  private byPgid: Map<number, ProcStat[]> | null = null;
  private readonly byMarker = new Map<string, ProcStat[]>();
  /** The pass by start time, oldest first; sorted[markedFrom..] have their markers indexed. */
  private readonly sorted: ProcStat[];
  private markedFrom: number;

  constructor(list: ProcStat[]) {
    this.sorted = [...list].sort((a, b) => a.startTicks - b.startTicks);
    this.markedFrom = this.sorted.length;
  }

  group(pgid: number): ProcStat[] {
    if (!this.byPgid) {
      this.byPgid = new Map();
      for (const st of this.sorted) push(this.byPgid, st.pgid, st);
    }
    return this.byPgid.get(pgid) ?? [];
  }

  marked(id: string, fromTicks: number): ProcStat[] {
    let lo = 0;
    let hi = this.sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.sorted[mid]!.startTicks < fromTicks) lo = mid + 1;
      else hi = mid;
    }
    for (; this.markedFrom > lo; ) {
      const st = this.sorted[--this.markedFrom]!;
      const m = instanceMarker(st);
      if (m !== null) push(this.byMarker, m, st);
    }
    return this.byMarker.get(id) ?? [];
  }
}

function push<K>(m: Map<K, ProcStat[]>, k: K, st: ProcStat): void {
  const l = m.get(k);
  if (l) l.push(st);
  else m.set(k, [st]);
}

/**
 * Live (non-zombie) processes that belong to a bot instance: members of its
 * process group, plus any process carrying its BOTWARDEN_INSTANCE marker (a
 * grandchild that called setsid left the group but kept the environment).
 * Descendants always started after the bot, so only younger processes have
 * their environment read. Discovered from a shared pass at most SNAPSHOT_MS
 * old: the group itself is always signalled as a whole, so only an escapee
 * born in those last milliseconds could be missed, and the duplicate hunter
 * finds it (its instance marker belongs to no live bot).
 */
export function instanceProcesses(inst: { id: string; pgid: number; startTicks: number | null }, o: { fresh?: boolean; maxAgeMs?: number } = {}): ProcStat[] {
  // A verdict ("the tree is gone") needs a pass that lists every process there is now; a usage
  // sample (maxAgeMs) may use an older one (a member born since is counted at the next sample).
  if (o.fresh) revalidate();
  const ix = snapshot(o.fresh ? SNAPSHOT_MS : (o.maxAgeMs ?? SNAPSHOT_MS));
  const from = inst.startTicks ?? 0;
  const out: ProcStat[] = [];
  const seen = new Set<number>();
  for (const st of [...ix.group(inst.pgid), ...ix.marked(inst.id, from)]) {
    if (st.startTicks < from || seen.has(st.pid)) continue;
    seen.add(st.pid);
    const now = readStat(st.pid);
    if (now === null) {
      // Unreadable for another reason than "gone": it counts as alive (SPEC 14.4).
      if (!lastReadGone) out.push(st);
      continue;
    }
    if (now.startTicks === st.startTicks && now.state !== 'Z' && now.state !== 'X') out.push(now);
  }
  return out;
}

/** Live group leaders whose BOTWARDEN_INSTANCE is one of these ids (a full pass: for rare paths). */
export function instanceLeaders(ids: Set<string>): Map<string, ProcStat> {
  const out = new Map<string, ProcStat>();
  for (const pid of listPids()) {
    const st = readStat(pid);
    if (!st || st.state === 'Z' || st.pgid !== pid) continue;
    const id = environValue(pid, 'BOTWARDEN_INSTANCE');
    if (typeof id === 'string' && ids.has(id)) out.set(id, st);
  }
  return out;
}

/**
 * A held-open /proc/<pid>/stat: bound to that very process, so a reused pid can
 * never answer for it, and each check is one pread instead of open/read/close.
 * After the process is reaped the read fails (ESRCH); a zombie still reads, as 'Z'.
 */
export interface StatHandle {
  alive(): boolean;
  close(): void;
}

export function openStatHandle(pid: number, startTicks: number | null): StatHandle | null {
  let fd: number;
  try {
    fd = openSync(`/proc/${pid}/stat`, 'r');
  } catch {
    return null;
  }
  const buf = Buffer.allocUnsafe(1024);
  const stateOf = (): string | null => {
    try {
      const n = readSync(fd, buf, 0, buf.length, 0);
      const close = buf.lastIndexOf(0x29, n); // ')'
      return close > 0 && close + 2 < n ? String.fromCharCode(buf[close + 2]!) : null;
    } catch (err) {
      // ESRCH: reaped. Any other failure proves nothing: still alive (SPEC 14.4).
      return isGoneError(err) ? null : '?';
    }
  };
  const st = readStat(pid);
  let open = true;
  const handle: StatHandle = {
    alive: () => {
      if (!open) return false;
      const s = stateOf();
      return s !== null && s !== 'Z' && s !== 'X';
    },
    close: () => {
      if (open) closeSync(fd);
      open = false;
    },
  };
  // The identity check happens once, at open: from then on the fd is that process.
  if (!st || (startTicks !== null && st.startTicks !== startTicks) || !handle.alive()) {
    handle.close();
    return null;
  }
  return handle;
}
