/**
 * The resource limits' decision (SPEC 16): a limit counts once it has held for `forMs`, once per
 * episode. CPU percent is of one core, between two samples (src/host/resources.ts reads them).
 */
import type { Account } from '../config/schema.js';

type Limits = NonNullable<Account['limits']>;

export class LimitWatch {
  /** Since when (clock ms) each limit has been over, or absent. */
  private readonly overSince = new Map<'memory' | 'cpu', number>();
  private readonly fired = new Set<'memory' | 'cpu'>();

  constructor(private readonly limits: Limits) {}

  /** Judges one sample; returns the limit that has now held for forMs (once per episode). */
  judge(nowMs: number, rssBytes: number, cpuPercent: number | null): { limit: 'memory' | 'cpu'; value: number } | null {
    const l = this.limits;
    const checks: ['memory' | 'cpu', boolean, number][] = [
      ['memory', l.memoryMB !== undefined && rssBytes > l.memoryMB * 1024 * 1024, rssBytes],
      ['cpu', l.cpuPercent !== undefined && cpuPercent !== null && cpuPercent > l.cpuPercent, cpuPercent ?? 0],
    ];
    for (const [limit, over, value] of checks) {
      if (!over) {
        this.overSince.delete(limit);
        this.fired.delete(limit);
        continue;
      }
      const since = this.overSince.get(limit) ?? nowMs;
      this.overSince.set(limit, since);
      if (nowMs - since >= l.forMs && !this.fired.has(limit)) {
        this.fired.add(limit);
        return { limit, value };
      }
    }
    return null;
  }
}
