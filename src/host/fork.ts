/**
 * Spawning a bot so that it outlives the daemon: its own session and process
 * group (detached), stdin ignored, stdout and stderr written straight to the
 * account's log file. Never a pipe through the daemon: a bot writing to the
 * pipe of a dead daemon dies of SIGPIPE/EPIPE.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fstatSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { startTicksOf } from './procfs.js';

export interface SpawnSpec {
  command: string[];
  cwd: string;
  env: Record<string, string>;
  logPath: string;
}

export interface ExitStatus {
  code: number | null;
  signal: string | null;
}

export interface Spawned {
  pid: number;
  /** The bot leads its own group: pgid === pid. */
  pgid: number;
  startTicks: number | null;
  /** Resolves when the process has exited (and was reaped). */
  exited: Promise<ExitStatus>;
  /** Size of the log file just before the spawn: where this process's output begins. */
  logStart: number;
}

/** How a bot gets spawned: by the spawner process (the daemon), or right here (spawnBot). */
export type SpawnFn = (spec: SpawnSpec) => Promise<Spawned>;

export class SpawnError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SpawnError';
  }
}

/** What a failed spawn says: the error, the command and where it ran. */
export function spawnFailure(spec: SpawnSpec, message: string): string {
  return `${message} (command: ${JSON.stringify(spec.command)}, cwd: ${spec.cwd})`;
}

export function logOpenFailure(spec: SpawnSpec, message: string): string {
  return `cannot open log file ${spec.logPath}: ${message}`;
}

/**
 * The spawn itself, given the log's open descriptor: its size first (where this process's output
 * will begin: every line it prints is scanned, even those printed before the daemon follows the
 * file), then the child in its own session with stdout and stderr on that descriptor. The caller
 * closes its copy of the descriptor; `child.pid` is undefined when the spawn failed (the error
 * follows as an 'error' event).
 */
export function spawnOnLog(spec: SpawnSpec, logFd: number): { child: ChildProcess; logStart: number } {
  const [file0, ...args] = spec.command;
  if (file0 === undefined) throw new SpawnError('empty command');
  // `node` means the Node that runs the daemon: service managers often start us with a bare PATH.
  const file = file0 === 'node' ? process.execPath : file0;
  let logStart = 0;
  try {
    logStart = fstatSync(logFd).size; // a few microseconds: not worth a thread-pool round trip
  } catch {
    // A stat that fails on an open file: start from 0 and rescan rather than miss a line.
  }
  try {
    const child = spawn(file, args, { cwd: spec.cwd, env: spec.env, detached: true, stdio: ['ignore', logFd, logFd], windowsHide: true });
    return { child, logStart };
  } catch (err) {
    throw new SpawnError((err as Error).message, { cause: err });
  }
}

/**
 * Spawns from this process (the spawner's fallback, and tests that run a Supervisor without a
 * daemon). The daemon itself spawns through its spawner process (spawner.ts): a fork of a
 * small process is cheaper than a fork of the daemon, and it does not block the event loop.
 */
export async function spawnBot(spec: SpawnSpec): Promise<Spawned> {
  if (spec.command[0] === undefined) throw new SpawnError('empty command');
  let log: FileHandle;
  try {
    // Off the event loop: creating a file costs ~0.6 ms on ext4, and 100 starts run at once.
    log = await open(spec.logPath, 'a', 0o640);
  } catch (err) {
    throw new SpawnError(logOpenFailure(spec, (err as Error).message), { cause: err });
  }
  let spawned: { child: ChildProcess; logStart: number };
  try {
    spawned = spawnOnLog(spec, log.fd);
  } finally {
    // The child has its own copy of the descriptor. Not awaited: the exit listener below must be
    // attached in this same tick, or a child that dies at once could exit unseen.
    log.close().catch(() => undefined);
  }
  const { child, logStart } = spawned;
  const exited = new Promise<ExitStatus>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const pid = child.pid;
  if (pid === undefined) {
    const err = await new Promise<Error>((resolve) => child.once('error', resolve));
    throw new SpawnError(spawnFailure(spec, err.message), { cause: err });
  }
  child.on('error', () => {
    // After a successful spawn only kill() can fail here; the exit path handles the rest.
  });
  // The daemon must be able to exit (leave-running) while the bot lives on.
  child.unref();
  return { pid, pgid: pid, startTicks: startTicksOf(pid), exited, logStart };
}

/** The spawner's protocol (spawner.ts), over its IPC channel. */
export interface SpawnRequest {
  id: number;
  spec: SpawnSpec;
}
export type SpawnReply = { id: number; pid: number; startTicks: number | null; logStart: number } | { id: number; error: string };
/** Exits reaped in one turn of the spawner's loop, in one message: [pid, code, signal] each. */
export interface SpawnExit {
  exits: [number, number | null, string | null][];
}
