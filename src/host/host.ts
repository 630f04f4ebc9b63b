/**
 * The one interface between the bot logic (src/supervisor/) and the machine's processes. Every
 * fork, every signal and every /proc read a bot's life needs goes through a `ProcessHost`: the
 * daemon runs on `LinuxHost`; the unit layer runs the same controller on a fake one
 * (test/unit/fake-host.ts) and a ManualClock.
 */
import type { Clock } from '../clock.js';
import { spawnBot, type ExitStatus, type SpawnFn, type SpawnSpec, type Spawned } from './fork.js';
import { ExitPoller } from './exit-poller.js';
import { runHook, type HookResult, type HookSpec } from './hook.js';
import type { OomLog } from './kmsg.js';
import { NotifySocket, type NotifyMessage } from './notify.js';
import { instanceLeaders, instanceProcesses, isAlive } from './procfs.js';
import { treeUsage, type TreeUsage } from './resources.js';
import { Grace, terminate, type TerminateResult, type TerminateTarget } from './terminate.js';

export type { ExitStatus, SpawnSpec, Spawned } from './fork.js';
export type { HookResult, HookSpec } from './hook.js';
export type { NotifyMessage } from './notify.js';
export type { TreeUsage } from './resources.js';
export type { TerminateResult, TerminateTarget } from './terminate.js';
export { Grace } from './terminate.js';

/** A bot's processes as the host knows them: its leader, its group and its instance marker. */
export interface Tree {
  instanceId: string;
  pid: number;
  /** The bot leads its own group: pgid === pid. */
  pgid: number;
  startTicks: number | null;
}

/** What identifies an instance's processes when some of it may be unknown (a lock row, a registry row). */
export interface InstanceIdentity {
  instanceId: string | null;
  pid: number | null;
  pgid?: number | null;
  startTicks: number | null;
}

/** A live process that is not our child, watched until it exits. */
export interface Watched {
  exited: Promise<ExitStatus>;
  /** A stop is under way: look for the exit often until it comes. */
  hurry: () => void;
}

/** The bot's end of the sd_notify protocol: a datagram socket at `path`. */
export interface NotifyEndpoint {
  readonly path: string;
  close(): void;
}

export interface ProcessHost {
  /** Forks a bot in its own session and group, its output on its log file. */
  spawn(spec: SpawnSpec): Promise<Spawned>;
  /** Watches a live process that is not our child (adopted at boot) until it exits. */
  watch(pid: number, startTicks: number | null): Watched;
  /**
   * Ends a tree: `signal` to its group and marked processes, the grace (which a later stop may cut
   * short), then SIGKILL. `gone` only once a fresh look finds none of it (SPEC 14.4, 14.7).
   */
  terminate(target: TerminateTarget, signal: NodeJS.Signals, grace: Grace): Promise<TerminateResult>;
  /** True while any process of the instance lives; a look that fails for another reason than "gone" says alive. */
  lives(i: InstanceIdentity): boolean;
  /** This exact process (pid + start time) is alive. */
  isAlive(pid: number, startTicks: number | null): boolean;
  /** The leaders of these instances, found by their marker (spawns the registry did not record). */
  leaders(instanceIds: Set<string>): Map<string, { pid: number; pgid: number; startTicks: number }>;
  /** Runs a hook command (pre-stop) to its end, its timeout, or the abort. */
  runHook(hook: HookSpec, o: { cwd: string; env: Record<string, string>; logPath: string; abort: Promise<void> }): Promise<HookResult>;
  /** The kernel's OOM killer killed this pid (its log says so). */
  killedByOom(pid: number): boolean;
  /** Memory and CPU time of the whole tree, now. */
  usage(tree: Tree): TreeUsage;
  /** Binds a NOTIFY_SOCKET for a bot; throws when it cannot be made. */
  notifySocket(path: string, onMessage: (m: NotifyMessage) => void): NotifyEndpoint;
}

/**
 * The machine's processes, on Linux: bots forked by the spawner process (or from here), exits of
 * bots that are not our children found by an identity poll, trees read from /proc.
 */
export class LinuxHost implements ProcessHost {
  constructor(
    readonly clock: Clock,
    private readonly o: { spawn?: SpawnFn; exits?: ExitPoller; oom?: OomLog } = {},
  ) {}

  private polls: ExitPoller | null = null;

  private get exits(): ExitPoller {
    return (this.polls ??= this.o.exits ?? new ExitPoller(this.clock));
  }

  spawn(spec: SpawnSpec): Promise<Spawned> {
    return (this.o.spawn ?? spawnBot)(spec);
  }

  watch(pid: number, startTicks: number | null): Watched {
    return { exited: this.exits.watch(pid, startTicks), hurry: () => this.exits.hurry(pid) };
  }

  terminate(target: TerminateTarget, signal: NodeJS.Signals, grace: Grace): Promise<TerminateResult> {
    return terminate(target, signal, grace, this.clock);
  }

  lives(i: InstanceIdentity): boolean {
    return instanceLives(i);
  }

  isAlive(pid: number, startTicks: number | null): boolean {
    return isAlive(pid, startTicks);
  }

  leaders(instanceIds: Set<string>): Map<string, { pid: number; pgid: number; startTicks: number }> {
    return instanceLeaders(instanceIds);
  }

  runHook(hook: HookSpec, o: { cwd: string; env: Record<string, string>; logPath: string; abort: Promise<void> }): Promise<HookResult> {
    return runHook(hook, o);
  }

  killedByOom(pid: number): boolean {
    return this.o.oom?.killedByOom(pid) ?? false;
  }

  usage(tree: Tree): TreeUsage {
    return treeUsage(tree);
  }

  notifySocket(path: string, onMessage: (m: NotifyMessage) => void): NotifyEndpoint {
    const sock = new NotifySocket(path, onMessage);
    sock.open();
    return sock;
  }

  /** Stops the exit polls (the bots are the next daemon's to adopt). */
  close(): void {
    (this.polls ?? this.o.exits)?.close();
  }
}

/**
 * True while any process of the instance lives: its leader, a member of its process group, or
 * any process carrying its BOTWARDEN_INSTANCE (SPEC 14.4). A /proc read that fails for another
 * reason than "no such process" counts as alive.
 */
export function instanceLives(i: InstanceIdentity): boolean {
  if (i.pid !== null && isAlive(i.pid, i.startTicks)) return true;
  if (i.instanceId === null) return false;
  // A bot leads its own group (pgid = pid); unknown pid: only the marker can tell.
  return instanceProcesses({ id: i.instanceId, pgid: i.pgid ?? i.pid ?? -1, startTicks: i.startTicks }, { fresh: true }).length > 0;
}
