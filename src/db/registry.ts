/**
 * The instance registry and the persisted bot state: what the next daemon
 * reads to re-adopt bots after a crash. Written before acting (intent first).
 */
import type { DB } from './open.js';

/**
 * Why a bot's process ended (SPEC 16): it exited by itself, botwarden stopped it (`reason` says
 * why), a signal botwarden did not send, the kernel's OOM killer, or it could not be spawned.
 */
export const EXIT_CAUSES = ['exit', 'stopped', 'killed-outside', 'oom', 'spawn-failed'] as const;
export type ExitCause = (typeof EXIT_CAUSES)[number];

export interface LastExit {
  code: number | null;
  signal: string | null;
  at: string;
  /** True when the bot did not stop within its grace and was SIGKILLed. */
  forced: boolean;
  /** Null for an exit recorded before causes were (an older daemon's row). */
  cause: ExitCause | null;
  /** With `stopped`: the stop reason (request, rotation, fence, schedule, unresponsive, limit, ...). */
  reason?: string | null;
}

export interface BotRow {
  account: string;
  /** A bot state (supervisor/states.ts): stored as the controller gives it, never judged here. */
  state: string;
  instanceId: string | null;
  restarts: number;
  keyId: string | null;
  lastExit: LastExit | null;
}

export interface InstanceRow {
  id: string;
  account: string;
  daemonId: string;
  pid: number | null;
  startTicks: number | null;
  pgid: number | null;
  state: 'spawning' | 'running' | 'exited';
  keyId: string | null;
  logPath: string | null;
  startedAt: string;
  endedAt: string | null;
  exitCode: number | null;
  exitSignal: string | null;
  forceKilled: boolean;
}

export class Registry {
  private readonly s;

  constructor(db: DB) {
    this.s = {
      upsertBot: db.prepare(`INSERT INTO bots (account, state, instance_id, restarts, key_id, last_exit_code, last_exit_signal, last_exit_at, last_exit_forced,
          last_exit_cause, last_exit_reason, updated_at)
        VALUES (@account, @state, @instanceId, @restarts, @keyId, @code, @signal, @at, @forced, @cause, @reason, @updatedAt)
        ON CONFLICT (account) DO UPDATE SET state = excluded.state, instance_id = excluded.instance_id, restarts = excluded.restarts,
          key_id = excluded.key_id, last_exit_code = excluded.last_exit_code, last_exit_signal = excluded.last_exit_signal,
          last_exit_at = excluded.last_exit_at, last_exit_forced = excluded.last_exit_forced, last_exit_cause = excluded.last_exit_cause,
          last_exit_reason = excluded.last_exit_reason, updated_at = excluded.updated_at`),
      allBots: db.prepare('SELECT * FROM bots'),
      insertInstance: db.prepare(`INSERT INTO instances (id, account, daemon_id, state, key_id, log_path, started_at)
        VALUES (@id, @account, @daemonId, 'spawning', @keyId, @logPath, @startedAt)`),
      spawned: db.prepare<[number, number | null, number, string]>(`UPDATE instances SET pid = ?, start_ticks = ?, pgid = ?, state = 'running' WHERE id = ?`),
      exited: db.prepare(`UPDATE instances SET state = 'exited', ended_at = @endedAt, exit_code = @code, exit_signal = @signal,
        force_killed = @forced WHERE id = @id`),
      liveInstances: db.prepare(`SELECT * FROM instances WHERE state <> 'exited' ORDER BY started_at`),
    };
  }

  saveBot(b: BotRow, now: string): void {
    this.s.upsertBot.run({
      account: b.account,
      state: b.state,
      instanceId: b.instanceId,
      restarts: b.restarts,
      keyId: b.keyId,
      code: b.lastExit?.code ?? null,
      signal: b.lastExit?.signal ?? null,
      at: b.lastExit?.at ?? null,
      forced: b.lastExit ? (b.lastExit.forced ? 1 : 0) : null,
      cause: b.lastExit?.cause ?? null,
      reason: b.lastExit?.reason ?? null,
      updatedAt: now,
    });
  }

  allBots(): BotRow[] {
    return (this.s.allBots.all() as BotDbRow[]).map(toBot);
  }

  /** The intent, written before the spawn. */
  createInstance(i: { id: string; account: string; daemonId: string; keyId: string | null; logPath: string; startedAt: string }): void {
    this.s.insertInstance.run(i);
  }

  markSpawned(id: string, pid: number, startTicks: number | null, pgid: number): void {
    this.s.spawned.run(pid, startTicks, pgid, id);
  }

  markExited(id: string, e: { code: number | null; signal: string | null; forced: boolean; endedAt: string }): void {
    this.s.exited.run({ id, code: e.code, signal: e.signal, forced: e.forced ? 1 : 0, endedAt: e.endedAt });
  }

  liveInstances(): InstanceRow[] {
    return (this.s.liveInstances.all() as InstDbRow[]).map(toInstance);
  }
}

interface BotDbRow {
  account: string;
  state: string;
  instance_id: string | null;
  restarts: number;
  key_id: string | null;
  last_exit_code: number | null;
  last_exit_signal: string | null;
  last_exit_at: string | null;
  last_exit_forced: number | null;
  last_exit_cause: ExitCause | null;
  last_exit_reason: string | null;
}

interface InstDbRow {
  id: string;
  account: string;
  daemon_id: string;
  pid: number | null;
  start_ticks: number | null;
  pgid: number | null;
  state: InstanceRow['state'];
  key_id: string | null;
  log_path: string | null;
  started_at: string;
  ended_at: string | null;
  exit_code: number | null;
  exit_signal: string | null;
  force_killed: number;
}

function toBot(r: BotDbRow): BotRow {
  return {
    account: r.account,
    state: r.state,
    instanceId: r.instance_id,
    restarts: r.restarts,
    keyId: r.key_id,
    lastExit:
      r.last_exit_at === null
        ? null
        : { code: r.last_exit_code, signal: r.last_exit_signal, at: r.last_exit_at, forced: r.last_exit_forced === 1, cause: r.last_exit_cause, reason: r.last_exit_reason },
  };
}

function toInstance(r: InstDbRow): InstanceRow {
  return {
    id: r.id,
    account: r.account,
    daemonId: r.daemon_id,
    pid: r.pid,
    startTicks: r.start_ticks,
    pgid: r.pgid,
    state: r.state,
    keyId: r.key_id,
    logPath: r.log_path,
    startedAt: r.started_at,
    endedAt: r.ended_at,
    exitCode: r.exit_code,
    exitSignal: r.exit_signal,
    forceKilled: r.force_killed === 1,
  };
}
