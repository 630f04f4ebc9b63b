/**
 * Time, injectable: the supervisor's timers (startMs, backoff, health) go
 * through a Clock so tests drive time instead of sleeping.
 */
export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Wall-clock ms since the epoch: for timestamps only, never for a deadline (it can step). */
  now(): number;
  /** Monotonic ms: what every deadline (grace, kill wait) is measured on. */
  mono(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
}

export const realClock: Clock = {
  now: () => Date.now(),
  mono: () => performance.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
};

/** Resolves after `ms` on this clock (a ManualClock: when the test advances it). Never holds the process open. */
export function sleepOn(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimeout(resolve, Math.max(0, ms)));
}

/** A clock that moves only when told to (tests). */
export class ManualClock implements Clock {
  private t: number;
  private seq = 0;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();

  constructor(start = Date.parse('2026-11-23T00:00:00Z')) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  mono(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return { cancel: () => this.timers.delete(id) };
  }

  /** Timers waiting to fire. */
  get pending(): number {
    return this.timers.size;
  }

  /**
   * Moves time forward in steps, letting the code that runs between timers (awaits, real I/O)
   * set its next timers, until `ms` have passed. For loops that sleep, look, and sleep again.
   */
  async run(ms: number, stepMs = 5): Promise<void> {
    const end = this.t + ms;
    while (this.t < end) {
      this.advance(Math.min(stepMs, end - this.t));
      await new Promise((r) => setImmediate(r));
    }
  }

  /** Moves time forward, firing due timers in order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = end;
  }
}
