/**
 * Free space on the data dir's filesystem. Below `daemon.minFreeBytes` the
 * daemon is `degraded` and stores a `disk.low` event (once per episode, while
 * it still can), which alerts may carry. When space returns, events that could
 * not be stored meanwhile are reported (`storage.recovered`).
 */
import { statfsSync } from 'node:fs';
import type { Logger } from 'pino';
import type { EventStore } from '../events/store.js';
import type { Check } from './health.js';

export class DiskWatcher {
  private low = false;
  private free: number | null = null;
  private error: string | null = null;

  constructor(
    private readonly path: string,
    private readonly minFreeBytes: () => number,
    private readonly events: EventStore,
    private readonly logger: Logger,
  ) {}

  /** Reads free space now (called every health interval). */
  check(): void {
    try {
      const st = statfsSync(this.path);
      this.free = Number(st.bavail) * Number(st.bsize);
      this.error = null;
    } catch (err) {
      this.error = (err as Error).message;
      return;
    }
    const min = this.minFreeBytes();
    if (this.free < min && !this.low) {
      this.low = true;
      this.logger.warn({ freeBytes: this.free, minFreeBytes: min, path: this.path }, 'disk space low on the data dir');
      this.events.emit('disk.low', { freeBytes: this.free, minFreeBytes: min, path: this.path });
    } else if (this.free >= min && this.low) {
      this.low = false;
      this.logger.info({ freeBytes: this.free }, 'disk space back above daemon.minFreeBytes');
    }
    if (this.events.lostEvents > 0) this.events.reportLost();
  }

  healthCheck(): Check {
    if (this.error !== null) return { name: 'disk', status: 'degraded', detail: `cannot read free space: ${this.error}` };
    if (this.free === null) return { name: 'disk', status: 'ok', detail: 'not measured yet' };
    const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
    return this.low
      ? { name: 'disk', status: 'degraded', detail: `${mib(this.free)} free on the data dir's filesystem, below daemon.minFreeBytes ${mib(this.minFreeBytes())}` }
      : { name: 'disk', status: 'ok', detail: `${mib(this.free)} free` };
  }
}
