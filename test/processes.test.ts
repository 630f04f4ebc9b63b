import { spawn, type ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { ProcessScanner, procPidSource, type PidSource } from '../src/host/processes.js';
import { handedOutBetween, listPids, startTicksOf, type PidMark } from '../src/host/procfs.js';
import { terminateProcess } from '../src/host/terminate.js';
import { killChildren } from './helper.js';

const children: ChildProcess[] = [];
afterEach(async () => {
  await killChildren(children);
});

function sleeper(): number {
  const c = spawn('sleep', ['30'], { stdio: 'ignore' });
  children.push(c);
  return c.pid!;
}

/** The real /proc listing, with the kernel's "last pid handed out" under the test's control. */
function fakeLastPid(works = true): PidSource & { last: number } {
  const s: PidSource & { last: number } = { last: 1000, lastPid: () => s.last, listPids, lastPidWorks: () => works };
  return s;
}

const pidsOf = async (scanner: ProcessScanner) => new Set((await scanner.scan()).map((p) => p.pid));

describe('process scanner: /proc is listed only when a process was created', () => {
  it('answers from its table while the last pid stands still, lists when it moves, and at least every fullEvery scans', async () => {
    const src = fakeLastPid();
    const scanner = new ProcessScanner(() => false, 5, () => false, src);
    await scanner.scan();
    expect(scanner.listings).toBe(1);
    const pid = sleeper();
    // The kernel (faked here) says no pid was handed out: the table answers, without the new one.
    expect((await pidsOf(scanner)).has(pid)).toBe(false);
    expect(scanner.listings).toBe(1);
    src.last++; // it moved: the next scan lists and sees the new process
    expect((await pidsOf(scanner)).has(pid)).toBe(true);
    expect(scanner.listings).toBe(2);
    for (let i = 0; i < 4; i++) await scanner.scan();
    expect(scanner.listings).toBe(2);
    await scanner.scan(); // fullEvery (5) scans since the last listing: listed whatever the kernel says
    expect(scanner.listings).toBe(3);
  });

  it('stops trusting a last pid that did not announce a process a listing then found', async () => {
    const src = fakeLastPid();
    const scanner = new ProcessScanner(() => false, 3, () => false, src);
    await scanner.scan();
    const pid = sleeper();
    await scanner.scan();
    await scanner.scan();
    expect((await pidsOf(scanner)).has(pid)).toBe(true); // the forced listing found it
    const before = scanner.listings;
    for (let i = 0; i < 3; i++) await scanner.scan();
    expect(scanner.listings).toBe(before + 3); // from now on every scan lists
  });

  it('lists every scan where the last pid does not follow process creation', async () => {
    const scanner = new ProcessScanner(() => false, 30, () => false, fakeLastPid(false));
    for (let i = 0; i < 4; i++) await scanner.scan();
    expect(scanner.listings).toBe(4);
  });

  it('with the real kernel: a process created between two scans is in the second, every time', async () => {
    const scanner = new ProcessScanner(() => false, 30, () => false, procPidSource);
    await scanner.scan();
    for (let i = 0; i < 5; i++) {
      const pid = sleeper();
      expect((await pidsOf(scanner)).has(pid)).toBe(true);
    }
  });

  it('reads neither argv nor environment of a registered bot, and reads both once it is no longer registered', async () => {
    const registered = new Set<number>();
    const scanner = new ProcessScanner(() => false, 30, (p) => registered.has(p.pid));
    const ours = spawn('sleep', ['31'], { stdio: 'ignore', env: { BOTWARDEN_ACCOUNT: 'acc', BOTWARDEN_INSTANCE: 'i-1' } });
    children.push(ours);
    registered.add(ours.pid!);
    const seen = async () => (await scanner.scan()).find((p) => p.pid === ours.pid);
    expect(await seen()).toMatchObject({ cmdline: '', account: null, instance: null });
    registered.delete(ours.pid!); // its registration ended while it runs: now it must be looked at
    expect(await seen()).toMatchObject({ cmdline: 'sleep 31', account: 'acc', instance: 'i-1' });
  });
});

describe('pids handed out between two looks at the kernel\'s pid cursor', () => {
  const m = (last: number, at = 0): PidMark => ({ last, at });
  it.each([
    // [before, now, pid, handed out?]
    [100, 100, 100, false],
    [100, 100, 50, false],
    [100, 105, 101, true],
    [100, 105, 105, true],
    [100, 105, 100, false],
    [100, 105, 106, false],
    [32760, 305, 32767, true], // wrapped at pid_max: the top of the range, then the bottom
    [32760, 305, 300, true],
    [32760, 305, 306, false],
    [32760, 305, 32760, false],
  ])('cursor %i -> %i: pid %i handed out = %s', (a, b, pid, expected) => {
    expect(handedOutBetween(pid, m(a), m(b, 500))).toBe(expected);
  });

  it('cannot tell without both looks, or when they are too far apart to rule out a full turn', () => {
    expect(handedOutBetween(5, null, m(10))).toBeNull();
    expect(handedOutBetween(5, m(1), null)).toBeNull();
    expect(handedOutBetween(5, m(1, 0), m(10, 60_000))).toBeNull();
  });
});

describe('terminateProcess (a copy started by hand)', () => {
  it('says whether it signalled: a copy gone before its signal was not killed by us (no second duplicate.killed)', async () => {
    const pid = sleeper();
    const startTicks = startTicksOf(pid)!;
    const first = await terminateProcess({ pid, startTicks }, 'SIGTERM', 2000);
    expect(first).toEqual({ forced: false, gone: true, signalled: true });
    // The same process again, as a second caller that asked after the kill was over.
    expect(await terminateProcess({ pid, startTicks }, 'SIGTERM', 2000)).toEqual({ forced: false, gone: true, signalled: false });
  });
});
