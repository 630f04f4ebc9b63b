/**
 * The pre-stop hook (SPEC 16, `stop.before`): a command run before the stop signal, e.g.
 * freqtrade's `POST /api/v1/stopentry`, so the bot stops opening trades before it is told to go.
 * Its output goes to the bot's log. It never delays the stop by more than `timeoutMs`: past that,
 * or when the stop is escalated meanwhile, its process group is SIGKILLed and the stop goes on.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';

/** A hook command and how long it may take. */
export interface HookSpec {
  command: string[];
  timeoutMs: number;
}

export interface HookResult {
  ok: boolean;
  ms: number;
  /** Why it did not end well: its exit code or signal, `timeout`, `escalated`, or a spawn error. */
  detail?: string;
}

export async function runHook(
  hook: HookSpec,
  o: { cwd: string; env: Record<string, string>; logPath: string; abort: Promise<void> },
): Promise<HookResult> {
  const t0 = performance.now();
  let fd: number | null;
  try {
    fd = openSync(o.logPath, 'a');
  } catch {
    fd = null;
  }
  const out = fd ?? 'ignore';
  const [file, ...args] = hook.command;
  const file0 = file === 'node' ? process.execPath : (file ?? '');
  const child = spawn(file0, args, { cwd: o.cwd, env: o.env, stdio: ['ignore', out, out], detached: true });
  if (fd !== null) closeSync(fd);
  const done = new Promise<HookResult>((resolve) => {
    child.once('error', (err) => resolve({ ok: false, ms: performance.now() - t0, detail: err.message }));
    child.once('exit', (code, signal) =>
      resolve({ ok: code === 0, ms: performance.now() - t0, ...(code === 0 ? {} : { detail: signal ?? `code ${code}` }) }),
    );
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), hook.timeoutMs)));
  const first = await Promise.race([done, timeout, o.abort.then(() => 'escalated' as const)]);
  clearTimeout(timer);
  if (typeof first !== 'string') return first;
  // Past its time (or the stop became urgent): its whole group goes, the stop goes on.
  if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  return { ok: false, ms: performance.now() - t0, detail: first };
}
