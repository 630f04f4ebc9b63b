import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, statfsSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { FollowHub, Follower, type FollowedFile } from '../src/output/follower.js';
import { LogRotation, type RotationOptions } from '../src/output/rotation.js';
import { LineScanner, READ_CHUNK } from '../src/output/scanner.js';
import { LogTailer, TailerGroup } from '../src/output/tailer.js';
import { tmpDir } from './helper.js';

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});

const tick = () => new Promise((r) => setImmediate(r));

function scanner(file: string, bufBytes = READ_CHUNK) {
  const lines: string[] = [];
  const errors: string[] = [];
  const s = new LineScanner(file, Buffer.alloc(bufBytes), (l) => lines.push(l), (what) => errors.push(what));
  cleanup.push(() => s.close());
  return { s, lines, errors };
}

function heldOpen(file: string): number {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === file;
    } catch {
      return false;
    }
  }).length;
}

describe('scanner', () => {
  it('hands over complete lines only, joining a line cut between reads and between pieces of one read', () => {
    const file = path.join(tmpDir(), 'a.log');
    writeFileSync(file, '');
    const { s, lines } = scanner(file, 16);
    appendFileSync(file, 'alpha\nbe');
    expect(s.read(1 << 20, () => {})).toBe(8);
    expect(lines).toEqual(['alpha']);
    appendFileSync(file, 'ta\r\n' + 'g'.repeat(40) + '\nend');
    let pieces = 0;
    expect(s.read(1 << 20, () => pieces++)).toBe(48);
    expect(pieces).toBe(3); // 16-byte buffer: 16 + 16 + 16, then a read finds nothing
    expect(lines).toEqual(['alpha', 'beta', 'g'.repeat(40)]);
    expect(s.offset).toBe(56);
    s.flush();
    expect(lines).toEqual(['alpha', 'beta', 'g'.repeat(40), 'end']);
  });

  it('cuts long lines at 64 KiB, and does not wait for the end of a line past that', () => {
    const file = path.join(tmpDir(), 'a.log');
    writeFileSync(file, '');
    const { s, lines } = scanner(file);
    appendFileSync(file, 'x'.repeat(100_000) + '\nshort\n');
    s.read(1 << 20, () => {});
    expect(lines.map((l) => l.length)).toEqual([65_536, 5]);
    appendFileSync(file, 'y'.repeat(70_000)); // no newline yet
    s.read(1 << 20, () => {});
    expect(lines.slice(2)).toEqual(['y'.repeat(65_536)]);
    appendFileSync(file, 'z\n');
    s.read(1 << 20, () => {});
    expect(lines.slice(3)).toEqual(['z']);
  });

  it('an endless line is cut after the complete lines before it, in order', () => {
    const file = path.join(tmpDir(), 'a.log');
    writeFileSync(file, '');
    const { s, lines } = scanner(file);
    appendFileSync(file, 'a\n' + 'w'.repeat(70_000));
    s.read(1 << 20, () => {});
    expect(lines.map((l) => l.slice(0, 3))).toEqual(['a', 'www']);
  });

  it('a multi-byte character cut between two pieces comes out whole', () => {
    const file = path.join(tmpDir(), 'a.log');
    writeFileSync(file, '');
    const { s, lines } = scanner(file, 16);
    // 15 ASCII bytes, then "€" (3 bytes): the first 16-byte piece ends inside it.
    appendFileSync(file, 'p'.repeat(15) + '€ nonce\n');
    s.read(1 << 20, () => {});
    expect(lines).toEqual(['p'.repeat(15) + '€ nonce']);
  });

  it('a file truncated by another process: release says so, and the scan starts over without the old partial line', () => {
    const file = path.join(tmpDir(), 'a.log');
    writeFileSync(file, '');
    const { s, lines } = scanner(file);
    appendFileSync(file, 'x'.repeat(100) + '\nhalf a li');
    s.read(1 << 20, () => {});
    expect(heldOpen(file)).toBe(1);
    expect(s.read(1 << 20, () => {})).toBe(0);
    expect(s.release()).toBe(false); // nothing new, nothing cut: only let go of
    expect(heldOpen(file)).toBe(0);
    truncateSync(file, 0);
    appendFileSync(file, 'after\n');
    expect(s.read(1 << 20, () => {})).toBe(0); // 6 bytes, but below what was read
    expect(s.release()).toBe(true);
    s.restart();
    s.read(1 << 20, () => {});
    expect(lines).toEqual(['x'.repeat(100), 'after']);
  });

  it('a throwing line handler is told, and the lines after it still come', () => {
    const file = path.join(tmpDir(), 'a.log');
    writeFileSync(file, 'one\nboom\ntwo\n');
    const lines: string[] = [];
    const errors: unknown[] = [];
    const s = new LineScanner(file, Buffer.alloc(64), (l) => {
      if (l === 'boom') throw new Error('scanner bug');
      lines.push(l);
    }, (_what, err) => errors.push(err));
    cleanup.push(() => s.close());
    s.read(1 << 20, () => {});
    expect(lines).toEqual(['one', 'two']);
    expect(errors).toEqual([new Error('scanner bug')]);
  });

  it('a file that cannot be opened reads as null; skipToEnd of a missing file is 0', () => {
    const { s } = scanner(path.join(tmpDir(), 'none.log'));
    s.skipToEnd();
    expect(s.offset).toBe(0);
    expect(s.read(1 << 20, () => {})).toBeNull();
  });
});

/** A scanner and a rotation as LogTailer joins them: rotated after any piece past maxBytes. */
function rotating(file: string, opts: Omit<RotationOptions, 'maxBytes'> & { maxBytes?: number }) {
  const sc = scanner(file);
  const r = new LogRotation(file, { maxBytes: 4096, ...opts });
  let rotations = 0;
  const read = () =>
    sc.s.read(Math.max(4096, opts.maxBytes ?? 4096), () => {
      if (r.due(sc.s) && r.rotate(sc.s)) rotations++;
    });
  return { ...sc, read, rotations: () => rotations };
}

/** The rotated files oldest first, then the live file, end to end. */
function stream(file: string, files: number): string {
  let out = '';
  for (let i = files; i >= 1; i--) if (existsSync(`${file}.${i}`)) out += readFileSync(`${file}.${i}`, 'utf8');
  return out + readFileSync(file, 'utf8');
}

describe('rotation', () => {
  it('copy-then-truncate keeps N files, newest in .1, each holding what was scanned before it', () => {
    const file = path.join(tmpDir(), 'a.log');
    writeFileSync(file, '');
    const { read, lines, rotations } = rotating(file, { files: 3, collapse: false });
    for (let round = 0; round < 6; round++) {
      appendFileSync(file, `round ${round} ` + 'y'.repeat(5000) + '\n');
      read();
    }
    expect(rotations()).toBe(6);
    expect(lines.map((l) => l.slice(0, 7))).toEqual(['round 0', 'round 1', 'round 2', 'round 3', 'round 4', 'round 5']);
    expect([1, 2, 3].map((i) => readFileSync(`${file}.${i}`, 'utf8').slice(0, 7))).toEqual(['round 5', 'round 4', 'round 3']);
    expect(existsSync(`${file}.4`)).toBe(false);
    expect(readFileSync(file, 'utf8')).toBe('');
  });

  it('copy-then-truncate while a writer appends in append mode: every line on disk is scanned once, in order, and no hole is left', async () => {
    const file = path.join(tmpDir(), 'a.log');
    writeFileSync(file, '');
    const { read, lines, rotations } = rotating(file, { files: 1000, maxBytes: 8192, collapse: false });
    const N = 20_000;
    // 50 lines, then 1 ms asleep: about 0.5 s of appends through the rotations.
    const script = `const fs = require('fs'); const fd = fs.openSync(process.argv[1], 'a'); const nap = new Int32Array(new SharedArrayBuffer(4));
      for (let i = 0; i < ${N}; i++) { fs.writeSync(fd, 'line ' + i + '\\n'); if (i % 50 === 49) Atomics.wait(nap, 0, 0, 1); }`;
    const writer: ChildProcess = spawn(process.execPath, ['-e', script, file], { stdio: 'ignore' });
    cleanup.push(() => {
      if (writer.exitCode === null && writer.pid !== undefined) process.kill(writer.pid, 'SIGKILL');
    });
    let exited = false;
    writer.on('exit', () => (exited = true));
    writer.on('error', () => (exited = true));
    let duringWrites = 0;
    while (!exited) {
      read();
      duringWrites = rotations();
      await tick();
    }
    read();
    expect(writer.exitCode).toBe(0);
    expect(duringWrites).toBeGreaterThan(5);
    const numbers = lines.map((l) => Number(/^line (\d+)$/.exec(l)?.[1] ?? NaN));
    expect(numbers.every((n, i) => Number.isInteger(n) && (i === 0 || n > numbers[i - 1]!))).toBe(true); // never twice, never out of order
    // What reached the disk is exactly what was scanned; only a write between the last read and the
    // ftruncate call can be lost (docs/operations.md: 0-1 lines in 26 rotations).
    const disk = stream(file, 1000);
    expect(disk.includes('\0')).toBe(false);
    expect(disk).toBe(lines.map((l) => l + '\n').join(''));
    // Lost lines come only from that window: one unbroken run of missing numbers at most per
    // rotation, however long the reader was descheduled in it (on a loaded machine, 50 lines once).
    const runs = numbers.filter((n, i) => n !== (i === 0 ? 0 : numbers[i - 1]! + 1)).length + (numbers.at(-1) === N - 1 ? 0 : 1);
    expect(runs).toBeLessThanOrEqual(rotations());
    // And few: at most 50 in a loaded run (one run, the writer's 1 ms burst). A rotation that threw
    // away what it had not read would lose about that much at every one of its ~24 rotations.
    expect(N - lines.length).toBeLessThanOrEqual(250);
  });

  it('where collapse-range is not supported (tmpfs), says so once and copies then truncates', (ctx) => {
    if (!existsSync('/dev/shm') || statfsSync('/dev/shm').type !== 0x01021994) return ctx.skip();
    const dir = mkdtempSync('/dev/shm/botwarden-');
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'a.log');
    writeFileSync(file, '');
    const told: string[] = [];
    const { read, rotations } = rotating(file, { files: 5, onError: (what) => told.push(what) });
    let written = '';
    for (let round = 0; round < 3; round++) {
      const line = `round ${round} ` + 'y'.repeat(5000) + '\n';
      appendFileSync(file, line);
      written += line;
      read();
    }
    expect(rotations()).toBe(3);
    expect(told).toEqual(['log rotation: collapse-range unsupported on this filesystem; using copy-then-truncate']);
    expect(readFileSync(file, 'utf8')).toBe('');
    expect(stream(file, 5)).toBe(written);
  });

  it('a failed rotation is told once per read, not once per piece, and tried again on the next read', () => {
    const dir = tmpDir();
    const file = path.join(dir, 'a.log');
    writeFileSync(file, '');
    mkdirSync(`${file}.1`); // the oldest file cannot be dropped: every rotation fails
    const told: string[] = [];
    const lines: string[] = [];
    const t = new LogTailer(file, (l) => lines.push(l), { group: new TailerGroup(new ManualClock()), maxBytes: 4096, files: 1, fromEnd: true, pollMs: 60_000, onError: (what) => told.push(what) });
    cleanup.push(() => t.stop());
    t.start();
    let written = ('z'.repeat(99) + '\n').repeat(200); // 20,000 bytes: 5 pieces of 4096
    appendFileSync(file, written);
    t.readNew();
    expect(lines.length).toBe(200);
    expect(told).toEqual(['log rotation failed']);
    appendFileSync(file, 'more\n');
    t.readNew();
    expect(told).toEqual(['log rotation failed', 'log rotation failed']);
    written += 'more\nagain\n';
    rmSync(`${file}.1`, { recursive: true });
    appendFileSync(file, 'again\n');
    t.readNew();
    expect(told.filter((w) => w === 'log rotation failed').length).toBe(2);
    expect(existsSync(`${file}.1`)).toBe(true);
    expect(stream(file, 1)).toBe(written);
    expect(lines.slice(-2)).toEqual(['more', 'again']);
  });
});

/** A followed file that only counts what the follower asks of it. */
function counted(file: string): FollowedFile & { reads: number; letGos: number } {
  const c = {
    path: file,
    reads: 0,
    letGos: 0,
    readNew: () => void c.reads++,
    letGo: () => void c.letGos++,
  };
  return c;
}

describe('follower', () => {
  it('the safety poll reads a file whose write fs.watch missed (the file was replaced under the watch)', async () => {
    const dir = tmpDir();
    const file = path.join(dir, 'a.log');
    writeFileSync(file, '');
    const clock = new ManualClock();
    const lines: string[] = [];
    const t = new LogTailer(file, (l) => lines.push(l), { group: new TailerGroup(clock), maxBytes: 1 << 20, files: 3, fromEnd: true, pollMs: 5000 });
    cleanup.push(() => t.stop());
    t.start();
    writeFileSync(path.join(dir, 'new.log'), '');
    renameSync(path.join(dir, 'new.log'), file); // the watch still follows the old, unlinked file
    await new Promise((r) => setTimeout(r, 100));
    appendFileSync(file, 'missed\n');
    await new Promise((r) => setTimeout(r, 200));
    expect(lines).toEqual([]); // no wakeup came
    clock.advance(5000);
    await tick();
    expect(lines).toEqual(['missed']);
  });

  it('without a watch (no file yet) the poll is every 2 s', async () => {
    const file = path.join(tmpDir(), 'late.log');
    const clock = new ManualClock();
    const lines: string[] = [];
    const t = new LogTailer(file, (l) => lines.push(l), { group: new TailerGroup(clock), maxBytes: 1 << 20, files: 3, fromEnd: true });
    cleanup.push(() => t.stop());
    t.start();
    await tick(); // the read at start found nothing
    writeFileSync(file, 'hello\n');
    await new Promise((r) => setTimeout(r, 100));
    expect(lines).toEqual([]);
    clock.advance(2000);
    await tick();
    expect(lines).toEqual(['hello']);
  });

  it('safety polls run on one timer, each file at its own phase', async () => {
    const clock = new ManualClock();
    const hub = new FollowHub(clock);
    const dir = tmpDir();
    const files = Array.from({ length: 100 }, (_, i) => counted(path.join(dir, `${i}.log`)));
    const followers = files.map((f) => new Follower(f, hub, { pollMs: 10_000 }));
    for (const f of followers) f.start();
    await tick();
    for (const f of files) f.reads = 0; // the read at start
    expect(clock.pending).toBe(1);
    const perSecond: number[] = [];
    for (let s = 0; s < 10; s++) {
      const before = files.reduce((n, f) => n + f.reads, 0);
      clock.advance(1000);
      await tick();
      perSecond.push(files.reduce((n, f) => n + f.reads, 0) - before);
    }
    expect(files.every((f) => f.reads === 1)).toBe(true);
    expect(Math.max(...perSecond)).toBeLessThan(40); // spread over the period, not all at once
    for (const f of followers) f.stop();
    clock.advance(10_000);
    await tick();
    expect(files.every((f) => f.reads === 1)).toBe(true);
    expect(clock.pending).toBe(0);
  });

  it('printing files are read on one shared timer, and each goes back (letting go of its file) after its quiet spell', () => {
    const clock = new ManualClock();
    const hub = new FollowHub(clock);
    const dir = tmpDir();
    const files = Array.from({ length: 10 }, (_, i) => counted(path.join(dir, `${i}.log`)));
    const followers = files.map((f) => new Follower(f, hub, { pollMs: 60_000, quietMs: 1000 }));
    for (const f of followers) f.start();
    const timers = clock.pending; // the safety poll
    for (const f of followers) f.sawOutput();
    expect(clock.pending).toBe(timers + 1); // one timer for all of them
    clock.advance(250);
    expect(files.map((f) => f.reads)).toEqual(Array(10).fill(1));
    followers[0]!.sawOutput(); // still printing
    clock.advance(750); // the others: quiet for 1 s
    expect(followers.map((f) => f.active)).toEqual([true, ...Array(9).fill(false)]);
    expect(files.map((f) => f.letGos)).toEqual([0, ...Array(9).fill(1)]);
    // Each read once more on the way back, for what came in between.
    expect(files.map((f) => f.reads)).toEqual([4, ...Array(9).fill(5)]);
    clock.advance(250);
    expect(followers[0]!.active).toBe(false);
    expect(clock.pending).toBe(timers); // nobody printing: no shared timer
    for (const f of followers) f.stop();
  });
});
