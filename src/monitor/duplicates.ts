/**
 * The duplicate hunter . A process is an instance of account A
 * when its environment says BOTWARDEN_ACCOUNT=A, or (without that marker) its
 * command line matches A's `match`. The registered instance, its descendants,
 * its process group and whatever carries its BOTWARDEN_INSTANCE are A's own;
 * any other instance is a duplicate: reported once (per pid + start time) and,
 * with `duplicates: kill`, stopped with the account's signal, grace, SIGKILL.
 */
import type { Logger } from 'pino';
import { realClock, type Clock, type TimerHandle } from '../clock.js';
import type { Account } from '../config/schema.js';
import { Errors } from '../errors.js';
import type { EventStore } from '../events/store.js';
import { listPids, readProcText, readStat } from '../host/procfs.js';
import type { Holder } from '../supervisor/diagnosis.js';
import type { Supervisor } from '../supervisor/supervisor.js';
import { terminateProcess } from '../host/terminate.js';
import { sanitizeLine } from '../output/patterns.js';
import { ProcessScanner, type ProcInfo } from '../host/processes.js';

/** Processes that hold a key in their environment without using it: an operator's terminal. */
const SHELLS = new Set(['bash', 'sh', 'dash', 'zsh', 'fish', 'ksh', 'tcsh', 'csh', 'tmux', 'tmux: server', 'screen', 'sshd', 'login', 'su', 'sudo']);

/**
 * botwarden itself holds every key in its environment: a daemon (`botwarden daemon`, `node
 * .../cli.js daemon`), its spawner and watchdog, and whatever started a daemon (npm, systemd,
 * docker's init). None of them is a key's second user.
 */
const INFRA_RE = /(?:^|[\s/])(?:botwarden|cli\.js) daemon\b|[\s/](?:spawner|watchdog)\.js\b/;

/** The pids of every botwarden daemon and helper on the machine, and of each one's ancestors. */
export function botwardenInfra(procs: Iterable<{ pid: number; ppid: number; cmdline: string }>): Set<number> {
  const byPid = new Map<number, { ppid: number }>();
  const roots: number[] = [];
  for (const p of procs) {
    byPid.set(p.pid, p);
    if (INFRA_RE.test(p.cmdline)) roots.push(p.pid);
  }
  const out = new Set<number>();
  for (const root of roots) {
    for (let pid: number | undefined = root, hops = 0; pid !== undefined && pid > 1 && !out.has(pid) && hops < 64; hops++) {
      out.add(pid);
      pid = byPid.get(pid)?.ppid;
    }
  }
  return out;
}

const NO_KEY_DUPLICATES: readonly { account: Account; by: 'key' }[] = [];

/** 10 s in clock ticks (USER_HZ 100): how young a process is while its spawn may be unrecorded. */
const YOUNG_TICKS = 1000;

export interface Duplicate {
  account: string;
  pid: number;
  startTicks: number;
  cmdline: string;
  /** What gave it away: its environment marker, or the account's `match`. */
  by: 'env' | 'match' | 'key';
  policy: 'kill' | 'report';
}

const key = (p: { pid: number; startTicks: number }) => `${p.pid}:${p.startTicks}`;

interface BotIndex {
  /** pid -> start ticks of every live registered bot (no string keys: this runs per process per scan). */
  registered: Map<number, number>;
  instances: Set<string>;
  pgids: Set<number>;
  pids: Set<number>;
}

export class DuplicateHunter {
  private readonly scanner: ProcessScanner;
  private readonly reported = new Map<string, Duplicate>();
  private readonly killing = new Map<string, Promise<void>>();
  /**
   * Copies already ended (pid + start time: never another process). A scan that read the table
   * before a kill finished must not report and end the same copy again (a second duplicate.killed).
   */
  private readonly ended = new Set<string>();
  private readonly ancestors = new Set<number>();
  private helpers: () => (number | undefined)[] = () => [];
  private patterns = new Map<string, RegExp>();
  private patternsFor: Map<string, Account> | null = null;
  private readonly matched = new WeakMap<ProcInfo, { config: Map<string, Account>; result: { account: Account; by: 'match' }[] }>();
  private timer: TimerHandle | null = null;
  private generation = 0;
  /** The configured keys' values (SPEC 17: a process holding a leased key is a duplicate). */
  private keys: { valuesOf(keyId: string): string[] } | null = null;
  private readonly keyMemo = new WeakMap<ProcInfo, { config: unknown; hits: string[] }>();
  private index: BotIndex = { registered: new Map(), instances: new Set(), pgids: new Set(), pids: new Set() };
  private scanning: Promise<Duplicate[]> | null = null;
  /** Closed with its daemon: no scan starts, no start passes. */
  private closed = false;
  private fresh: Promise<Duplicate[]> | null = null;
  /** Scan figures for /health and the bench. */
  readonly stats = { scans: 0, lastScanMs: 0, totalScanMs: 0, processes: 0 };

  constructor(
    private readonly supervisor: Supervisor,
    private readonly events: EventStore,
    private readonly logger: Logger,
    /** Known secret values, masked in reported command lines. */
    private readonly secrets: () => readonly string[] = () => [],
    /** Scan period and kill grace run on this clock. */
    private readonly clock: Clock = realClock,
    /** BOTWARDEN_SCOPE: only processes that carry it are looked at (independent daemons on one machine). */
    private readonly scope: string | null = null,
  ) {
    // Re-read every scan: processes that look like bots, except the registered bots themselves
    // (their exits are watched elsewhere, and a registered bot is its account's own by definition).
    this.scanner = new ProcessScanner(
      (p) => this.inScope(p) && this.accountsOf(p).length > 0,
      30,
      (p) => this.isRegistered(p),
    );
    // The daemon and whatever started it are never anybody's duplicate, even if a `match` is too broad.
    for (let pid: number | undefined = process.pid; pid !== undefined && pid > 1 && !this.ancestors.has(pid); ) {
      this.ancestors.add(pid);
      pid = readStat(pid)?.ppid;
    }
  }

  start(intervalMs: number): void {
    this.stop();
    const gen = ++this.generation;
    // The next scan is scheduled when this one is done: scans never pile up on a slow machine.
    const tick = () => {
      this.timer = this.clock.setTimeout(() => {
        this.scanNow()
          .catch((err: unknown) => this.logger.error({ err }, 'duplicate scan failed'))
          .finally(() => {
            if (gen === this.generation) tick();
          });
      }, intervalMs);
    };
    tick();
  }

  stop(): void {
    this.generation++;
    this.timer?.cancel();
    this.timer = null;
  }

  /** Stops scanning and waits for the scan and kills under way (their events need the database). */
  async close(): Promise<void> {
    this.stop();
    this.closed = true;
    await this.scanning?.catch(() => undefined);
    await Promise.allSettled([...this.killing.values()]);
  }

  /** Looks for leased key values in other processes' environments (SPEC 17). */
  watchKeys(keys: { valuesOf(keyId: string): string[] }): void {
    this.keys = keys;
  }

  /** The daemon's helper processes (spawner, watchdog): never duplicates, even if a `match` is too broad. */
  spare(helpers: () => (number | undefined)[]): void {
    this.helpers = helpers;
  }

  /** Duplicates alive at the last scan (for /health). */
  live(): Duplicate[] {
    return [...this.reported.values()];
  }

  /** One scan (concurrent callers share it): reports new duplicates and starts killing per policy. */
  scanNow(): Promise<Duplicate[]> {
    if (this.closed) return Promise.resolve([]);
    this.scanning ??= this.scanOnce().finally(() => {
      this.scanning = null;
    });
    return this.scanning;
  }

  /**
   * Before a start: the account must have no live copy. With `kill` the copies are
   * ended first; with `report` the start is refused with DUPLICATE_RUNNING.
   */
  async clearBeforeStart(account: Account): Promise<void> {
    if (this.closed) throw Errors.shuttingDown();
    const dups = (await this.freshScan()).filter((d) => d.account === account.id);
    if (dups.length === 0) return;
    if (account.duplicates === 'report') throw Errors.duplicateRunning(account.id, dups.map((d) => d.pid));
    await Promise.all(dups.map((d) => this.endCopy(d, account)));
  }

  /**
   * A scan that begins after this call: a start must see every process that existed when it was
   * asked for. Starts asked for in the same turn of the event loop (a burst of requests) share one
   * scan, run once their handlers have all been queued; a scan already under way (begun before
   * some of them) is waited out, never shared.
   */
  private freshScan(): Promise<Duplicate[]> {
    this.fresh ??= new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
      await this.scanning?.catch(() => undefined);
      this.fresh = null;
      return this.scanNow();
    });
    return this.fresh;
  }

  private async scanOnce(): Promise<Duplicate[]> {
    const t0 = performance.now();
    this.buildIndex();
    const procs = await this.scanner.scan();
    const nowTicks = this.scanner.nowTicks;
    // Built only if some candidate needs its ancestors looked up (rare: registered bots are skipped).
    let byPidMap: Map<number, ProcInfo> | null = null;
    const byPid = () => (byPidMap ??= new Map(procs.map((p) => [p.pid, p])));
    const alive = new Set<string>();
    const found: Duplicate[] = [];
    const helpers = this.helpers();
    // Which key is leased to which of our running bots (and its instance): the shared-key rule.
    const leasedKeys = new Map<string, { account: Account; instance: string | null }>();
    if (this.keys) for (const b of this.supervisor.all()) if (b.keyId !== null && b.live) leasedKeys.set(b.keyId, { account: b.account, instance: b.live.instanceId });
    // Other botwarden daemons on this machine (and what started them) hold the keys too.
    const infra = leasedKeys.size > 0 ? botwardenInfra(procs) : new Set<number>();
    for (const p of procs) {
      // A registered bot is its account's own by definition: no classification needed.
      if (this.ancestors.has(p.pid) || this.isRegistered(p) || helpers.includes(p.pid) || !this.inScope(p) || (this.ended.size > 0 && this.ended.has(key(p)))) continue;
      // No allocation for the common case (no process holds a leased key): the scan's hot path.
      const byKey = leasedKeys.size === 0 || infra.has(p.pid) ? NO_KEY_DUPLICATES : this.keyDuplicates(p, leasedKeys, byPid);
      for (const { account, by } of byKey.length === 0 ? this.accountsOf(p) : [...this.accountsOf(p), ...byKey]) {
        if (this.isOwn(p, byPid)) continue;
        // Another daemon's bot under its live lease (PostgreSQL mode, two daemons on one machine).
        // A process seconds old may be another daemon's bot whose spawn is not recorded yet.
        if (p.instance !== null && (await this.leased(p.instance, nowTicks - p.startTicks < YOUNG_TICKS ? account.id : null))) continue;
        const k = key(p);
        // Its kill may have ended while the lease was looked up: it is no copy any more.
        if (this.ended.has(k)) continue;
        alive.add(k);
        let dup = this.reported.get(k);
        if (!dup) {
          dup = { account: account.id, pid: p.pid, startTicks: p.startTicks, cmdline: p.cmdline, by, policy: account.duplicates };
          this.reported.set(k, dup);
          // Reported once per process (pid + start time), not every scan.
          this.events.emit('duplicate.detected', { account: account.id, pid: p.pid, cmdline: sanitizeLine(p.cmdline, this.secrets()), by, policy: account.duplicates, actor: 'system:hunter' });
          this.logger.warn({ account: account.id, pid: p.pid, by, policy: account.duplicates }, 'duplicate instance detected');
        }
        found.push(dup);
        if (account.duplicates === 'kill') void this.endCopy(dup, account);
      }
    }
    for (const k of this.reported.keys()) if (!alive.has(k) && !this.killing.has(k)) this.reported.delete(k);
    this.stats.scans++;
    this.stats.lastScanMs = performance.now() - t0;
    this.stats.totalScanMs += this.stats.lastScanMs;
    this.stats.processes = procs.length;
    return found;
  }

  private leased(instanceId: string, youngOf: string | null): Promise<boolean> {
    return this.supervisor.isLeasedInstance(instanceId, youngOf).catch(() => true); // backend down: never kill on a guess
  }

  /**
   * SPEC 17, shared keys: a process that is not the lessee's holds a leased key's value in its
   * environment. It is a duplicate of the account the key is leased to, at every scan. Shells (an
   * operator's terminal with the key exported) never make API calls and are left alone.
   */
  private keyDuplicates(p: ProcInfo, leased: Map<string, { account: Account; instance: string | null }>, procs: () => Map<number, ProcInfo>): readonly { account: Account; by: 'key' }[] {
    if (leased.size === 0 || SHELLS.has(p.comm)) return NO_KEY_DUPLICATES;
    let out: readonly { account: Account; by: 'key' }[] = NO_KEY_DUPLICATES;
    for (const keyId of this.keyHits(p)) {
      const l = leased.get(keyId);
      if (!l || (p.instance !== null && p.instance === l.instance) || this.isOwn(p, procs)) continue;
      // A bot of another account is not a copy of this one (its own key is another).
      if (p.account !== null && p.account !== l.account.id) continue;
      out = [...out, { account: l.account, by: 'key' }];
    }
    return out;
  }

  /** The configured keys whose value is in this process's environment (read once per process and config). */
  private keyHits(p: ProcInfo): string[] {
    const keys = this.keys;
    if (!keys) return [];
    const config = this.supervisor.currentConfig();
    const memo = this.keyMemo.get(p);
    if (memo && memo.config === config) return memo.hits;
    const env = readProcText(`/proc/${p.pid}/environ`);
    const hits: string[] = [];
    if (env !== null) for (const id of Object.keys(config.keys)) if (keys.valuesOf(id).some((v) => env.includes(v))) hits.push(id);
    this.keyMemo.set(p, { config, hits });
    return hits;
  }

  /** The live processes that hold a key's value, other than the lessee instance's (a nonce trip's evidence). */
  keyHolders(keyId: string, ownInstance: string | null): Holder[] {
    const values = this.keys?.valuesOf(keyId) ?? [];
    if (values.length === 0) return [];
    const helpers = new Set(this.helpers());
    const all: { pid: number; ppid: number; cmdline: string; startTicks: number; comm: string }[] = [];
    for (const pid of listPids()) {
      const st = readStat(pid);
      if (!st || st.state === 'Z') continue;
      all.push({ pid, ppid: st.ppid, startTicks: st.startTicks, comm: st.comm, cmdline: (readProcText(`/proc/${pid}/cmdline`) ?? st.comm).split('\0').join(' ').trim() });
    }
    const infra = botwardenInfra(all);
    const out: Holder[] = [];
    for (const p of all) {
      if (p.pid === process.pid || this.ancestors.has(p.pid) || helpers.has(p.pid) || infra.has(p.pid) || SHELLS.has(p.comm)) continue;
      const env = readProcText(`/proc/${p.pid}/environ`);
      if (env === null || !values.some((v) => env.includes(v))) continue;
      if (this.scope !== null && !env.includes(`BOTWARDEN_SCOPE=${this.scope}\0`)) continue;
      if (ownInstance !== null && env.includes(`BOTWARDEN_INSTANCE=${ownInstance}\0`)) continue;
      out.push({ pid: p.pid, startTicks: p.startTicks, cmdline: sanitizeLine(p.cmdline, this.secrets()) });
    }
    return out;
  }

  /** Instances of which accounts this process is. The environment marker wins over `match`. */
  private accountsOf(p: ProcInfo): { account: Account; by: 'env' | 'match' }[] {
    const accounts = this.supervisor.currentConfig().accounts;
    if (p.account !== null) {
      const a = accounts.get(p.account);
      return a ? [{ account: a, by: 'env' }] : [];
    }
    if (this.patternsFor !== accounts) {
      this.patterns = new Map([...accounts.values()].filter((a) => a.match !== undefined).map((a) => [a.id, new RegExp(a.match!)]));
      this.patternsFor = accounts;
    }
    // Every known process is classified every scan: remember the answer until the process is
    // re-read (a new ProcInfo object) or the config changes.
    const memo = this.matched.get(p);
    if (memo && memo.config === accounts) return memo.result;
    const result: { account: Account; by: 'match' }[] = [];
    for (const [id, re] of this.patterns) if (re.test(p.cmdline)) result.push({ account: accounts.get(id)!, by: 'match' });
    this.matched.set(p, { config: accounts, result });
    return result;
  }

  private inScope(p: ProcInfo): boolean {
    return this.scope === null || p.scope === this.scope;
  }

  /** Is this exact process (pid + start time) a registered bot? O(1) on the scan's index. */
  private isRegistered(p: ProcInfo): boolean {
    return this.index.registered.get(p.pid) === p.startTicks;
  }

  /**
   * The registered instance of an account, its group, its descendants and its marked processes are
   * its own. O(depth of the process tree) per process on the scan's index, not O(bots).
   */
  private isOwn(p: ProcInfo, procs: () => Map<number, ProcInfo>): boolean {
    const ix = this.index;
    // Some account's own bot (or a piece of it) is never a duplicate of another account via `match`.
    if ((p.instance !== null && ix.instances.has(p.instance)) || ix.pgids.has(p.pgid) || ix.pids.has(p.pid)) return true;
    const byPid = procs();
    for (let q = byPid.get(p.ppid), hops = 0; q && hops < 64; q = byPid.get(q.ppid), hops++) {
      if (ix.registered.get(q.pid) === q.startTicks) return true;
    }
    return false;
  }

  /** One pass over the bots per scan: what every per-process check looks up. */
  private buildIndex(): void {
    const ix: BotIndex = { registered: new Map(), instances: new Set(), pgids: new Set(), pids: new Set() };
    for (const bot of this.supervisor.all()) {
      const launching = bot.launchingInstance;
      if (launching !== null) ix.instances.add(launching);
      const inst = bot.live;
      if (!inst) continue;
      ix.instances.add(inst.instanceId);
      ix.pgids.add(inst.pgid);
      ix.pids.add(inst.pid);
      if (inst.startTicks !== null) ix.registered.set(inst.pid, inst.startTicks);
    }
    this.index = ix;
  }

  private endCopy(dup: Duplicate, account: Account): Promise<void> {
    const k = key(dup);
    // Ended already: a kill can be over before its scan's caller asks for it (a copy that dies in
    // the instant after its signal ends it within the same turn), and a second terminate would
    // report a second duplicate.killed of a process that is gone.
    if (this.ended.has(k)) return Promise.resolve();
    let running = this.killing.get(k);
    if (!running) {
      running = this.terminate(dup, account).then(
        (gone) => {
          this.killing.delete(k);
          this.reported.delete(k);
          if (!gone) return;
          this.ended.add(k);
          // Bounded: the oldest go first (a Set keeps insertion order).
          if (this.ended.size > 1000) this.ended.delete(this.ended.values().next().value!);
        },
        (err: unknown) => {
          this.killing.delete(k);
          this.reported.delete(k);
          this.logger.error({ err, account: dup.account, pid: dup.pid }, 'ending a duplicate failed');
        },
      );
      this.killing.set(k, running);
    }
    return running;
  }

  /** Signal, grace, SIGKILL (the one termination mechanism), then says what happened. */
  private async terminate(dup: Duplicate, account: Account): Promise<boolean> {
    const { forced, gone, signalled } = await terminateProcess(dup, account.stop.signal, account.stop.graceMs, this.clock);
    // Gone before any signal of ours: it ended by itself, and nobody killed it.
    if (!signalled) return true;
    if (!gone) {
      this.logger.error({ account: dup.account, pid: dup.pid }, 'a duplicate instance survived SIGKILL (uninterruptible sleep?); it stays reported');
      return false;
    }
    this.events.emit('duplicate.killed', { account: dup.account, pid: dup.pid, forced, cmdline: sanitizeLine(dup.cmdline, this.secrets()), actor: 'system:hunter' });
    this.logger.warn({ account: dup.account, pid: dup.pid, forced }, 'duplicate instance killed');
    return true;
  }
}
