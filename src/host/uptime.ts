/**
 * CLOCK_BOOTTIME, the monotonic clock that keeps counting while the machine is
 * suspended (performance.now() is CLOCK_MONOTONIC, which stops). Every lease
 * deadline in PostgreSQL mode is on it: a laptop that slept through its lease
 * wakes up with its fence deadlines passed, not pushed back by the nap.
 *
 * Node has no binding for it; the first field of /proc/uptime is that clock
 * (seconds, two decimals). It is read through a held descriptor with pread (no
 * open/close per read), and combined with performance.now() for sub-ms
 * resolution: boot = mono + offset, where the offset (time spent suspended,
 * plus boot) only ever grows, so the largest one measured is kept.
 *
 * It depends on nothing but Node: the watchdog process uses it too.
 */
import { closeSync, openSync, readSync } from 'node:fs';

let fd = -1;
const buf = Buffer.alloc(64);

/** The first field of /proc/uptime, in ms (10 ms resolution). Throws when /proc is unreadable. */
export function readUptimeMs(): number {
  if (fd < 0) fd = openSync('/proc/uptime', 'r');
  let n: number;
  try {
    n = readSync(fd, buf, 0, buf.length, 0);
  } catch (err) {
    closeSync(fd);
    fd = -1;
    throw err;
  }
  // "12345.67 54321.00\n": digits, a dot, two decimals.
  let ms = 0;
  let frac = -1;
  for (let i = 0; i < n; i++) {
    const c = buf[i]!;
    if (c === 0x2e) frac = 0;
    else if (c >= 0x30 && c <= 0x39) {
      if (frac >= 0) {
        if (frac < 3) ms += (c - 0x30) * [100, 10, 1][frac]!;
        frac++;
      } else ms = ms * 10 + (c - 0x30) * 1000;
    } else break;
  }
  return ms;
}

/** A boot-time clock in ms: monotonic, counts suspend, sub-ms resolution. */
export type BootClock = () => number;

export function createBootClock(read: () => number = readUptimeMs, mono: () => number = () => performance.now()): BootClock {
  let offset = -Infinity;
  return () => {
    const m = mono();
    const o = read() - m;
    if (o > offset) offset = o;
    return m + offset;
  };
}

/** The process-wide boot clock. */
export const bootClock: BootClock = createBootClock();
