/**
 * Everything that watches one running instance besides its exit (SPEC 16): its NOTIFY_SOCKET
 * (READY=1, STATUS=, WATCHDOG=1), the liveness checks, the resource sample of its whole tree with
 * the limits, and the scheduled restart. The controller owns one per instance and hears back
 * through `WatchHooks`; it decides what a finding leads to (an event, an alert, a restart through
 * the start gate).
 */
import { Cron } from 'croner';
import type { Clock, TimerHandle } from '../clock.js';
import type { Account } from '../config/schema.js';
import { LivenessWatch, type LivenessCheck } from './liveness.js';
import { notifyPath } from '../host/notify.js';
import type { NotifyEndpoint, ProcessHost } from '../host/host.js';
import { LimitWatch } from './limits.js';

/**
 * A bot without limits is sampled only when someone looks (GET /bots, a metrics scrape), at most
 * this often: sampling 1,000 idle bots every 10 s on a timer cost 4 % of a core (bench), against
 * the 1 % goal for everything.
 */
const SAMPLE_MS = 5_000;

export interface WatchHooks {
  lastOutputAt(): number | null;
  unresponsive(check: LivenessCheck, lastSeenMs: number | null): void;
  limitExceeded(limit: 'memory' | 'cpu', value: number): void;
  /** READY=1 came (notify): STARTING -> RUNNING. */
  ready(): void;
  /** The restart schedule is due. */
  scheduled(): void;
}

export interface WatchedInstance {
  instanceId: string;
  pgid: number;
  startTicks: number | null;
}

export class BotWatch {
  private notify: NotifyEndpoint | null = null;
  private liveness: LivenessWatch | null = null;
  private limits: LimitWatch | null = null;
  private sampleTimer: TimerHandle | null = null;
  private scheduleTimer: TimerHandle | null = null;
  private inst: WatchedInstance | null = null;
  private last: { at: number; cpuSeconds: number } | null = null;
  private closed = false;
  /** Why NOTIFY_SOCKET could not be made (the bot then runs on startMs), or null. */
  notifyError: string | null = null;
  /** READY=1 came (it may come before the controller knows the instance). */
  readySeen = false;
  status: string | null = null;
  rssBytes: number | null = null;
  cpuPercent: number | null = null;
  /** CPU seconds of the tree so far (the metric's counter). */
  cpuSeconds = 0;

  constructor(
    private readonly account: Account,
    private readonly clock: Clock,
    private readonly dataDir: string,
    private readonly host: Pick<ProcessHost, 'usage' | 'notifySocket'>,
    private readonly hooks: WatchHooks,
  ) {
    // The socket exists before the bot does: its first READY=1 must find it.
    if (account.liveness?.notify) {
      try {
        this.notify = host.notifySocket(notifyPath(dataDir, account.id), (m) => {
          if (m.status !== null) this.status = m.status;
          this.liveness?.notified(m);
          if (m.ready) this.hooks.ready();
        });
      } catch (err) {
        // No socket (the addon missing, a path too long): the bot runs without it, on startMs.
        this.notifyError = (err as Error).message;
      }
    }
  }

  /** What the bot's environment gets for the protocol (systemd's names). */
  get env(): Record<string, string> {
    const l = this.account.liveness;
    if (!this.notify || !l) return {};
    return { NOTIFY_SOCKET: this.notify.path, ...(l.watchdogMs !== undefined ? { WATCHDOG_USEC: String(l.watchdogMs * 1000) } : {}) };
  }

  /** With notify, READY=1 (not startMs) makes the bot `running`. */
  get readyByNotify(): boolean {
    return this.notify !== null;
  }

  /** `adopted`: a bot found running by this daemon: its READY=1 went to the one before. */
  start(inst: WatchedInstance, startedAtMs: number, adopted = false): void {
    if (this.closed) return;
    this.inst = inst;
    const a = this.account;
    if (a.liveness) {
      this.liveness = new LivenessWatch(a.liveness, this.clock, startedAtMs, a.cwd, {
        lastOutputAt: () => this.hooks.lastOutputAt(),
        unresponsive: (check, lastSeen) => this.hooks.unresponsive(check, lastSeen),
      });
      // Ready already (it said so to the last daemon); its watchdog counts from its first WATCHDOG=1 here.
      if (adopted) this.liveness.adopted();
      this.liveness.start();
    }
    if (a.limits) {
      this.limits = new LimitWatch(a.limits);
      // The first sample at a random point of the period: bots started in one burst would
      // otherwise be sampled in one burst, period after period.
      this.scheduleSample(Math.floor(Math.random() * this.sampleEvery()));
    }
    this.scheduleRestart();
  }

  stop(): void {
    this.closed = true;
    this.liveness?.stop();
    this.sampleTimer?.cancel();
    this.scheduleTimer?.cancel();
    this.notify?.close();
  }

  private sampleEvery(): number {
    const l = this.account.limits;
    // forMs / 2, between 0.25 s and 30 s: a limit is acted on within 1.5 x forMs of its start. At
    // 1,000 bots with forMs 60 s that is 33 samples a second (bench: the idle cost of limits).
    return l ? Math.max(250, Math.min(30_000, Math.floor(l.forMs / 2) || 250)) : SAMPLE_MS;
  }

  /** For a view: a sample no older than SAMPLE_MS (a bot with limits is sampled on its timer anyway). */
  refresh(): void {
    if (this.limits || this.closed) return;
    if (this.last && this.clock.mono() - this.last.at < SAMPLE_MS) return;
    this.sample();
  }

  private scheduleSample(inMs = this.sampleEvery()): void {
    if (this.closed) return;
    this.sampleTimer = this.clock.setTimeout(() => {
      this.sample();
      this.scheduleSample();
    }, inMs);
  }

  /** Memory and CPU of the whole tree now; a limit held for forMs is told once per episode. */
  sample(): void {
    const inst = this.inst;
    if (!inst || this.closed) return;
    const u = this.host.usage({ instanceId: inst.instanceId, pid: inst.pgid, pgid: inst.pgid, startTicks: inst.startTicks });
    const now = this.clock.now();
    const mono = this.clock.mono();
    this.rssBytes = u.rssBytes;
    if (this.last && mono > this.last.at) this.cpuPercent = Math.max(0, ((u.cpuSeconds - this.last.cpuSeconds) / ((mono - this.last.at) / 1000)) * 100);
    if (this.last) this.cpuSeconds += Math.max(0, u.cpuSeconds - this.last.cpuSeconds);
    this.last = { at: mono, cpuSeconds: u.cpuSeconds };
    const hit = this.limits?.judge(now, u.rssBytes, this.cpuPercent);
    if (hit) this.hooks.limitExceeded(hit.limit, hit.limit === 'memory' ? u.rssBytes : Math.round(hit.value));
  }

  private scheduleRestart(): void {
    const r = this.account.restart;
    if (this.closed || !r.schedule) return;
    const now = this.clock.now();
    const next = new Cron(r.schedule, { paused: true }).nextRun(new Date(now));
    if (!next) return;
    const jitter = r.jitterMs > 0 ? Math.floor(Math.random() * r.jitterMs) : 0;
    this.scheduleTimer = this.clock.setTimeout(() => {
      if (this.closed) return;
      this.hooks.scheduled();
    }, next.getTime() - now + jitter);
  }
}
