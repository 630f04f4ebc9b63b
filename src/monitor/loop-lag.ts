/**
 * Event-loop lag, measured: a 50 ms timer records how late it fires. Node's
 * monitorEventLoopDelay drops the sample that spans a reset() (so a block right
 * after a /health read went unseen) and reports its own resolution as delay;
 * this reports only lateness, and every window keeps its samples.
 */
import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';

export class LoopLag {
  private hist: RecordableHistogram = createHistogram();
  private timer: NodeJS.Timeout | null = null;
  private expected = 0;

  constructor(private readonly periodMs = 50) {}

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

  /** p99 and max lateness (ms) since the last read, then a new window. Counts the current lag too. */
  read(): { p99Ms: number; maxMs: number } {
    const pending = performance.now() - this.expected;
    if (pending > 0) this.hist.record(Math.max(1, Math.round(pending * 1e3)));
    const h = this.hist;
    const out = { p99Ms: h.count > 0 ? h.percentile(99) / 1e3 : 0, maxMs: h.count > 0 ? h.max / 1e3 : 0 };
    this.hist = createHistogram();
    return out;
  }
}
