/**
 * The daemon's side of the spawner (src/spawner.ts): bots are forked by that
 * small process, not by the daemon, and their exits come back over its IPC
 * channel with their codes. If the spawner dies, the bots it started live on
 * (their own sessions; in PostgreSQL mode `--pdeathsig` ends them) and are
 * watched like adopted ones, by an identity poll; the next start brings up a
 * new spawner. Should none start at all, the daemon spawns by itself.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { HOST_SCRIPT } from '../paths.js';
import { instanceLeaders } from './procfs.js';
import { SpawnError, spawnBot, type ExitStatus, type SpawnExit, type SpawnReply, type SpawnSpec, type Spawned } from './fork.js';

/** dist/host/spawner.js, also from the TypeScript sources (tests). */
function script(): string | undefined {
  const file = HOST_SCRIPT('spawner');
  return existsSync(file) ? file : undefined;
}

/** The spawner's Node flags (see ensure()); scripts/mem-floor.mjs forks its stand-in with them. */
export const SPAWNER_EXEC_ARGV = ['--max-semi-space-size=1', '--no-expose-wasm', '--lite-mode'];

type Answer = { ok: Spawned } | { error: string };

interface Pending {
  resolve: (a: Answer) => void;
  /** The request's BOTWARDEN_INSTANCE: how its process is found if the spawner dies before answering. */
  instance: string | undefined;
  /** The log's size when the request left: where the process's output begins. */
  logStart: number;
}

/** How long a process forked by a spawner that died is looked for (it may not have exec'd yet). */
const RECOVER_MS = 300;

export class Spawner {
  private child: ChildProcess | null = null;
  private seq = 0;
  private readonly pending = new Map<number, Pending>();
  /** Bots this spawner started that have not exited: pid -> identity and exit. */
  private readonly live = new Map<number, { startTicks: number | null; resolve: (s: ExitStatus) => void }>();
  private closed = false;
  /** Bots the daemon forked itself that still run. */
  private direct = 0;

  constructor(
    /** Watches a bot whose spawner died (an identity poll, as for adopted bots). */
    private readonly orphaned: (pid: number, startTicks: number | null) => Promise<ExitStatus>,
    private readonly logger: Logger,
    /** Answers and exits are in (one read may carry many): the records they lead to can share a commit. */
    private readonly onBurst: () => void = () => undefined,
    /** Above how many running forks the spawner takes over (daemon.spawnerAbove; 0: always). */
    private readonly above: () => number = () => 0,
  ) {}

  /** The spawner's pid while it runs (the duplicate hunter spares it). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  spawn = async (spec: SpawnSpec): Promise<Spawned> => {
    // A fork from the daemon holds up its event loop while the page tables are copied (~1.3 ms at
    // its size with 50 bots), and the spawner is a Node process of 17 MB. So the daemon forks by
    // itself while few of its forks run, and the spawner takes over (and stays) above that, where
    // bursts of hundreds of starts are. Also by itself when the spawner cannot start, or the
    // daemon is stopping.
    const child = this.closed || (this.child === null && this.direct + this.live.size < this.above()) ? null : this.ensure();
    if (!child) return this.forkDirect(spec);
    const id = ++this.seq;
    // A request in flight keeps the daemon alive (the channel is unref'd otherwise).
    if (this.pending.size === 0) child.channel?.ref();
    const answer = await new Promise<Answer>((resolve) => {
      this.pending.set(id, { resolve, instance: spec.env.BOTWARDEN_INSTANCE, logStart: logSize(spec.logPath) });
      child.send({ id, spec }, (err) => {
        if (!err || !this.pending.delete(id)) return;
        if (this.pending.size === 0) child.channel?.unref();
        resolve({ error: `the spawner did not take the request: ${err.message}` });
      });
    });
    if ('error' in answer) throw new SpawnError(answer.error);
    return answer.ok;
  };

  /** Brings the spawner up ahead of the first start (a Node process takes ~50-100 ms to boot), when it is to fork every bot. */
  warm(): void {
    if (!this.closed && this.above() === 0) this.ensure();
  }

  private async forkDirect(spec: SpawnSpec): Promise<Spawned> {
    this.direct++;
    try {
      const spawned = await spawnBot(spec);
      void spawned.exited.finally(() => this.direct--);
      return spawned;
    } catch (err) {
      this.direct--;
      throw err;
    }
  }

  /** The daemon stops: the spawner exits once its channel closes (the bots live on). */
  close(): void {
    this.closed = true;
    // Its bots are no longer ours to watch: they stop with the daemon, or the next one adopts them.
    this.live.clear();
    const child = this.child;
    this.child = null;
    if (child?.connected) child.disconnect();
  }

  private ensure(): ChildProcess | null {
    if (this.child) return this.child;
    const file = script();
    if (!file) {
      this.logger.warn('spawner.js not found (run npm run build): the daemon spawns bots by itself');
      return null;
    }
    let child: ChildProcess;
    try {
      // A lean Node: no flags of the daemon's, no environment (a bot's comes with each request,
      // so the daemon's secrets are never in this process), a 1 MB young generation, and V8's lite
      // mode (no optimizing compiler; its little JavaScript never needs one): 1.8 MB less PSS. Lite
      // mode turns WebAssembly off, and says so on stderr unless told first.
      child = fork(file, [], { execArgv: SPAWNER_EXEC_ARGV, env: {}, stdio: ['ignore', 'ignore', 'inherit', 'ipc'], serialization: 'json' });
    } catch (err) {
      this.logger.error({ err }, 'the spawner could not start: the daemon spawns bots by itself');
      return null;
    }
    child.on('message', (m: SpawnReply | SpawnExit) => this.onMessage(m));
    child.on('error', (err) => this.logger.error({ err }, 'spawner channel error'));
    child.once('exit', (code, signal) => this.onExit(child, code, signal));
    // Neither the process nor its channel keeps the daemon alive (leave-running exits with bots up).
    child.unref();
    child.channel?.unref();
    this.child = child;
    return child;
  }

  private onMessage(m: SpawnReply | SpawnExit): void {
    this.onBurst();
    if ('exits' in m) {
      for (const [pid, code, signal] of m.exits) {
        const w = this.live.get(pid);
        this.live.delete(pid);
        w?.resolve({ code, signal });
      }
      return;
    }
    const resolve = this.pending.get(m.id)?.resolve;
    this.pending.delete(m.id);
    if (this.pending.size === 0) this.child?.channel?.unref();
    if (!resolve) return;
    if ('error' in m) return resolve({ error: m.error });
    const { pid, startTicks, logStart } = m;
    // Registered in this same call: the exit may be the very next message of this read.
    const exited = new Promise<ExitStatus>((res) => this.live.set(pid, { startTicks, resolve: res }));
    resolve({ ok: { pid, pgid: pid, startTicks, exited, logStart } });
  }

  private async recover(p: Pending, why: string): Promise<Answer> {
    const id = p.instance;
    if (id === undefined) return { error: why };
    const until = performance.now() + RECOVER_MS;
    for (;;) {
      const st = instanceLeaders(new Set([id])).get(id);
      if (st) {
        this.logger.warn({ pid: st.pid }, 'the spawner died before answering, but the bot it forked runs: taken as spawned');
        return { ok: { pid: st.pid, pgid: st.pgid, startTicks: st.startTicks, exited: this.orphaned(st.pid, st.startTicks), logStart: p.logStart } };
      }
      if (this.closed || performance.now() > until) return { error: why };
      await sleep(20);
    }
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.child === child) this.child = null;
    const pending = [...this.pending.values()];
    this.pending.clear();
    // A request in flight may or may not have spawned. A process that did come of it carries the
    // request's instance marker: it is handed back as spawned (watched by polling), so no live bot
    // is ever left out of /bots with its lock released (SPEC 14.3).
    const why = `the spawner exited (code ${code}, signal ${signal}) before answering`;
    for (const p of pending) void this.recover(p, why).then(p.resolve);
    if (this.closed) return; // the daemon closed it: nothing is waiting on it any more
    const orphans = [...this.live];
    this.live.clear();
    for (const [pid, w] of orphans) void this.orphaned(pid, w.startTicks).then(w.resolve);
    this.logger.error({ code, signal, orphans: orphans.length }, 'the spawner exited: its bots are watched by polling; the next start brings up a new one');
  }
}

function logSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}
