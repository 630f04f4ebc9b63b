/**
 * Spawning a bot so that it outlives the daemon: its own session and process
 * group (detached), stdin ignored, stdout and stderr written straight to the
 * account's log file. Never a pipe through the daemon: a bot writing to the
 * pipe of a dead daemon dies of SIGPIPE/EPIPE.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fstatSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { startTicksOf } from '../proc/procfs.js';

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
  child: ChildProcess;
  pid: number;
  /** The bot leads its own group: pgid === pid. */
  pgid: number;
  startTicks: number | null;
  /** Resolves when the process has exited (and was reaped). */
  exited: Promise<ExitStatus>;
  /** Size of the log file just before the spawn: where this process's output begins. */
  logStart: number;
}

export class SpawnError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SpawnError';
  }
}

export async function spawnBot(spec: SpawnSpec): Promise<Spawned> {
  const [file0, ...args] = spec.command;
  if (file0 === undefined) throw new SpawnError('empty command');
  // `node` means the Node that runs the daemon: service managers often start us with a bare PATH.
  const file = file0 === 'node' ? process.execPath : file0;
  let log: FileHandle;
  try {
    // Off the event loop: creating a file costs ~0.6 ms on ext4, and 100 starts run at once.
    log = await open(spec.logPath, 'a', 0o640);
  } catch (err) {
    throw new SpawnError(`cannot open log file ${spec.logPath}: ${(err as Error).message}`, { cause: err });
  }
  let logStart = 0;
  try {
    // Where this process's output will begin: every line it prints is scanned, even those it
    // prints before the daemon starts following the file.
    logStart = fstatSync(log.fd).size; // a few microseconds: not worth a thread-pool round trip
  } catch {
    // A stat that fails on an open file: start from 0 and rescan rather than miss a line.
  }
  let child: ChildProcess;
  try {
    child = spawn(file, args, { cwd: spec.cwd, env: spec.env, detached: true, stdio: ['ignore', log.fd, log.fd], windowsHide: true });
  } catch (err) {
    throw new SpawnError((err as Error).message, { cause: err });
  } finally {
    // The child has its own copy of the descriptor. Not awaited: the exit listener below must be
    // attached in this same tick, or a child that dies at once could exit unseen.
    log.close().catch(() => undefined);
  }
  const exited = new Promise<ExitStatus>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const pid = child.pid;
  if (pid === undefined) {
    const err = await new Promise<Error>((resolve) => child.once('error', resolve));
    throw new SpawnError(`${err.message} (command: ${JSON.stringify(spec.command)}, cwd: ${spec.cwd})`, { cause: err });
  }
  child.on('error', () => {
    // After a successful spawn only kill() can fail here; the exit path handles the rest.
  });
  // The daemon must be able to exit (leave-running) while the bot lives on.
  child.unref();
  return { child, pid, pgid: pid, startTicks: startTicksOf(pid), exited, logStart };
}
