/**
 * One bot process from birth to death, with its records: spawn + registry row
 * (intent first) + lock attach; terminate + recorded exit + `bot.exited`.
 */
import type { Clock, TimerHandle } from '../clock.js';
import { Errors } from '../errors.js';
import type { Account } from '../config/schema.js';
import type { Registry } from '../db/registry.js';
import type { EventStore } from '../events/store.js';
import type { AccountLease } from './lease.js';
import { Grace, type ExitStatus, type ProcessHost } from '../host/host.js';

/** A live process of this bot. Adopted ones (not our children) get `exited` from a poll. */
export interface LiveInstance {
  instanceId: string;
  pid: number;
  pgid: number;
  startTicks: number | null;
  startedAt: string;
  keyId: string | null;
  logPath: string;
  exited: Promise<ExitStatus>;
  /** Adopted bots (not our children): look for the exit often while a stop is under way. */
  hurry?: () => void;
  /** Our own spawns: where the process's output begins in the log (adopted bots are followed from the end). */
  logStart?: number;
}

export interface InstanceDeps {
  registry: Registry;
  events: EventStore;
  daemonId: string;
  clock: Clock;
  /** Wraps a bot's argv so it dies with the daemon (PostgreSQL mode), or leaves it as is. */
  wrapCommand: (command: string[]) => string[];
  /** Forks, signals and /proc: the machine's processes (a fake one in the unit layer). */
  host: ProcessHost;
}

export interface Launch {
  /** Chosen by the controller before the spawn, so its own duplicate hunter knows the process at once. */
  instanceId: string;
  account: Account;
  keyId: string | null;
  logPath: string;
  env: Record<string, string>;
  /** Told as soon as the process exists, before its lock records it (the watchdog lists it from then on). */
  onSpawned?: (p: { pid: number; pgid: number; startTicks: number | null }) => void;
  /** The lock could not record the process and its tree outlived SIGKILL: the caller keeps the lock. */
  outlived?: (inst: LiveInstance) => void;
}

/** Spawns under the lease we hold: the instance row is written before the spawn, the pid after. */
export async function launchInstance(d: InstanceDeps, lease: AccountLease, l: Launch): Promise<LiveInstance> {
  lease.assertValid();
  const instanceId = l.instanceId;
  const startedAt = new Date(d.clock.now()).toISOString();
  d.registry.createInstance({ id: instanceId, account: l.account.id, daemonId: d.daemonId, keyId: l.keyId, logPath: l.logPath, startedAt });
  // The instance row (intent) is committed before the process exists (a group may hold it).
  if (!(await d.events.durable())) throw Errors.storageFull('the start could not be recorded');
  let spawned;
  try {
    spawned = await d.host.spawn({
      command: d.wrapCommand(l.account.command),
      cwd: l.account.cwd,
      env: { ...l.env, BOTWARDEN_ACCOUNT: l.account.id, BOTWARDEN_INSTANCE: instanceId },
      logPath: l.logPath,
    });
  } catch (err) {
    d.registry.markExited(instanceId, { code: null, signal: null, forced: false, endedAt: startedAt });
    throw err;
  }
  l.onSpawned?.(spawned);
  d.registry.markSpawned(instanceId, spawned.pid, spawned.startTicks, spawned.pgid);
  const inst: LiveInstance = { instanceId, pid: spawned.pid, pgid: spawned.pgid, startTicks: spawned.startTicks, startedAt, keyId: l.keyId, logPath: l.logPath, exited: spawned.exited, logStart: spawned.logStart };
  try {
    await lease.attach({ instanceId, pid: inst.pid, startTicks: inst.startTicks });
  } catch (err) {
    // The lock could not record the process: it must not run unrecorded.
    const { gone } = await endInstance(d, l.account, inst, { grace: 0 });
    if (!gone) l.outlived?.(inst);
    throw err;
  }
  return inst;
}

export interface Ended {
  status: ExitStatus;
  forced: boolean;
  /** False: some process of the tree outlived SIGKILL (SPEC 14.7); its lock must stay. */
  gone: boolean;
  at: string;
}

/**
 * Ends the instance's whole tree (signal, grace, SIGKILL) and records its exit. `known` is the
 * leader's status when it already exited; otherwise it follows at once for our spawner's child (a poll for
 * adopted bots).
 */
export async function endInstance(
  d: InstanceDeps,
  account: Account,
  inst: LiveInstance,
  o: { grace: Grace | number; known?: ExitStatus; why?: { cause: string; reason?: string } },
): Promise<Ended> {
  // What led here (a `stopping` state) is committed before the signal leaves.
  await d.events.durable();
  const { forced, gone } = await d.host.terminate(
    { instanceId: inst.instanceId, pid: inst.pid, pgid: inst.pgid, startTicks: inst.startTicks, exited: inst.exited, ...(inst.hurry ? { hurry: inst.hurry } : {}) },
    account.stop.signal,
    typeof o.grace === 'number' ? new Grace(d.clock, o.grace) : o.grace,
  );
  const unknown: ExitStatus = { code: null, signal: forced ? 'SIGKILL' : null };
  // The tree is gone; the spawner's word on the leader's code is a message away (at most 2 s).
  const status = o.known ?? (await exitWithin(d.clock, inst.exited, 2000, unknown));
  const at = recordExit(d, { account: account.id, pid: inst.pid, instanceId: inst.instanceId }, status, forced, o.why ?? {});
  return { status, forced, gone, at };
}

/**
 * The one way a bot's exit is recorded, whoever saw it (a stop, an unexpected exit, the boot
 * finding it dead): the registry row and the `bot.exited` event in one transaction, timed on the
 * daemon's clock. Returns when (ISO).
 */
export function recordExit(
  d: Pick<InstanceDeps, 'events' | 'registry' | 'clock'>,
  inst: { account: string; pid: number | null; instanceId: string },
  status: ExitStatus,
  forced: boolean,
  fields: Record<string, unknown>,
): string {
  const at = new Date(d.clock.now()).toISOString();
  d.events.emit('bot.exited', { account: inst.account, pid: inst.pid, instanceId: inst.instanceId, code: status.code, signal: status.signal, forced, ...fields }, () =>
    d.registry.markExited(inst.instanceId, { code: status.code, signal: status.signal, forced, endedAt: at }),
  );
  return at;
}

async function exitWithin(clock: Clock, exited: Promise<ExitStatus>, ms: number, otherwise: ExitStatus): Promise<ExitStatus> {
  let timer: TimerHandle | undefined;
  try {
    return await Promise.race([exited, new Promise<ExitStatus>((resolve) => (timer = clock.setTimeout(() => resolve(otherwise), ms)))]);
  } finally {
    timer?.cancel();
  }
}
