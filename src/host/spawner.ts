/**
 * The spawner: a small helper process that forks the bots for the daemon and
 * tells it their exits, over its IPC channel (SpawnRequest in, SpawnReply and
 * SpawnExit out). `fork()` copies the page tables of the process that calls
 * it and blocks its event loop until the child has exec'd: ~1.5 ms from this
 * process against 3-5 ms from the daemon at 1,000 bots, and here it does not
 * hold up the daemon's requests. The bots are in their own sessions and write
 * to their log files, so they outlive this process as they outlive the
 * daemon. It exits when the daemon disconnects (a clean stop or a crash);
 * signals meant for the daemon's group (Ctrl-C) do not stop it, so exits keep
 * flowing while the daemon stops its bots. It depends on nothing but Node.
 */
import { closeSync, openSync } from 'node:fs';
import { startTicksOf } from './procfs.js';
import { logOpenFailure, spawnFailure, spawnOnLog, type SpawnExit, type SpawnReply, type SpawnRequest } from './fork.js';

if (!process.send) {
  process.stderr.write('botwarden spawner: run by the daemon only (it needs an IPC channel)\n');
  process.exit(2);
}
const send = (m: SpawnReply | SpawnExit): void => {
  if (process.connected) process.send!(m);
};

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => undefined);
process.on('disconnect', () => process.exit(0));

// A shutdown reaps hundreds of bots in one turn: their exits go out together, one message.
const exits: SpawnExit['exits'] = [];
function exited(pid: number, code: number | null, signal: string | null): void {
  if (exits.length === 0) setImmediate(flushExits);
  exits.push([pid, code, signal]);
}
/** Before any answer too: an exit is never told after the spawn of a process that took its pid. */
function flushExits(): void {
  if (exits.length > 0) send({ exits: exits.splice(0) });
}

process.on('message', (m: SpawnRequest) => {
  flushExits();
  const { id, spec } = m;
  let fd: number;
  try {
    fd = openSync(spec.logPath, 'a', 0o640);
  } catch (err) {
    send({ id, error: logOpenFailure(spec, (err as Error).message) });
    return;
  }
  try {
    const { child, logStart } = spawnOnLog(spec, fd);
    const pid = child.pid;
    if (pid === undefined) {
      child.once('error', (err) => send({ id, error: spawnFailure(spec, err.message) }));
      return;
    }
    child.on('error', () => undefined); // after a spawn, only kill() can fail: not used here
    child.once('exit', (code, signal) => exited(pid, code, signal));
    // Read before the exit can be reaped (that takes a turn of this loop): the identity is exact.
    send({ id, pid, startTicks: startTicksOf(pid), logStart });
  } catch (err) {
    send({ id, error: (err as Error).message });
  } finally {
    closeSync(fd);
  }
});
