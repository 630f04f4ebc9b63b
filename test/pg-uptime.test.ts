/** The boot-time clock (CLOCK_BOOTTIME via /proc/uptime) that PostgreSQL mode's deadlines are on. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { bootClock, createBootClock, readUptimeMs } from '../src/host/uptime.js';

describe('boot-time clock', () => {
  it('reads the first field of /proc/uptime in ms', () => {
    const before = Number(readFileSync('/proc/uptime', 'latin1').split(' ')[0]) * 1000;
    const ms = readUptimeMs();
    const after = Number(readFileSync('/proc/uptime', 'latin1').split(' ')[0]) * 1000;
    expect(ms).toBeGreaterThanOrEqual(Math.round(before));
    expect(ms).toBeLessThanOrEqual(Math.round(after));
  });

  it('moves with performance.now() while awake, with sub-ms resolution, never backwards', () => {
    const b0 = bootClock();
    const m0 = performance.now();
    const start = Date.now();
    let last = b0;
    while (Date.now() - start < 50) {
      const b = bootClock();
      expect(b).toBeGreaterThanOrEqual(last);
      last = b;
    }
    // Read side by side (a preemption between two reads, on a loaded machine, is not drift): the
    // closest of a few tries.
    const drift = Math.min(...Array.from({ length: 5 }, () => Math.abs(bootClock() - b0 - (performance.now() - m0))));
    expect(drift).toBeLessThan(15);
    expect(Math.min(...Array.from({ length: 5 }, () => Math.abs(bootClock() - readUptimeMs())))).toBeLessThan(20);
  });

  it('jumps by the time suspended (the uptime ran, the monotonic clock did not)', () => {
    let up = 1_000_000;
    let mono = 500;
    const clock = createBootClock(
      () => up,
      () => mono,
    );
    const t0 = clock();
    mono += 100;
    up += 100;
    expect(clock() - t0).toBeCloseTo(100);
    up += 30_000; // asleep: only the boot clock counted
    expect(clock() - t0).toBeCloseTo(30_100);
    mono += 5;
    up += 0; // a coarse read (10 ms steps) never moves it back
    expect(clock() - t0).toBeCloseTo(30_105);
  });
});
