/**
 * How the event loop is doing, measured without waking the daemon up often
 * (each wakeup costs ~0.15 ms of CPU on a small VM, and an idle daemon should
 * cost nothing):
 * - utilisation: the share of the last window the loop spent running code
 *   (`performance.eventLoopUtilization`, no timer at all): a 300 ms block in a
 *   400 ms window reads 75 %;
 * - lag: a 1 s timer records how late it fires (Node's monitorEventLoopDelay
 *   drops the sample that spans a reset(), and reports its own resolution as
 *   delay; this reports lateness only).
 */
import { createHistogram, performance, type EventLoopUtilization, type RecordableHistogram } from 'node:perf_hooks';

export interface LoopFigures {
  /** Share of the window the loop was busy, 0-100. */
  busyPct: number;
  windowMs: number;
  p99Ms: number;
  maxMs: number;
}

export class LoopLag {
  private hist: RecordableHistogram = createHistogram();
  private timer: NodeJS.Timeout | null = null;
  private expected = 0;
  private elu: EventLoopUtilization = performance.eventLoopUtilization();
  private since = performance.now();

  constructor(private readonly periodMs = 1000) {}

  start(): void {
    this.expected = performance.now() + this.periodMs;
    this.timer = setInterval(() => {
      const now = performance.now();
      // setInterval's next due time is counted from when the callback ran.
      this.hist.record(Math.max(1, Math.round((now - this.expected) * 1e3)));
      this.expected = now + this.periodMs;
    }, this.periodMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** The figures since the last read, then a new window. Counts the lag still pending too. */
  read(): LoopFigures {
    const now = performance.now();
    const pending = now - this.expected;
    if (this.timer && pending > 0) this.hist.record(Math.max(1, Math.round(pending * 1e3)));
    const h = this.hist;
    const elu = performance.eventLoopUtilization(this.elu);
    const out = {
      busyPct: Math.round(elu.utilization * 1000) / 10,
      windowMs: Math.round(now - this.since),
      p99Ms: h.count > 0 ? h.percentile(99) / 1e3 : 0,
      maxMs: h.count > 0 ? h.max / 1e3 : 0,
    };
    this.hist = createHistogram();
    this.elu = performance.eventLoopUtilization();
    this.since = now;
    return out;
  }
}
