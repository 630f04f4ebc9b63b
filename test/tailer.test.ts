import { appendFileSync, readdirSync, readlinkSync, statSync, existsSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { lastLines, LogTailer, TailerGroup } from '../src/output/tailer.js';
import { tmpDir, waitFor } from './helper.js';

const tailers: LogTailer[] = [];
afterEach(() => {
  for (const t of tailers.splice(0)) t.stop();
});

function follow(file: string, opts: Partial<ConstructorParameters<typeof LogTailer>[2]> = {}) {
  const lines: string[] = [];
  const t = new LogTailer(file, (l) => lines.push(l), { group: new TailerGroup(), maxBytes: 1 << 20, files: 3, fromEnd: true, pollMs: 50, ...opts });
  tailers.push(t);
  t.start();
  return { t, lines };
}

describe('log tailer', () => {
  it('hands over only appended complete lines, from the end, joining partial writes', async () => {
    const file = path.join(tmpDir(), 'a.log');
    writeFileSync(file, 'old line\n');
    const { lines } = follow(file);
    appendFileSync(file, 'first\nsec');
    appendFileSync(file, 'ond\r\nthird\n');
    await waitFor(() => lines.length === 3, { what: '3 lines' });
    expect(lines).toEqual(['first', 'second', 'third']);
  });

  it('from a given offset: lines a new process printed before the tailer started are not missed', async () => {
    const file = path.join(tmpDir(), 'a.log');
    writeFileSync(file, 'the previous run\n');
    const start = statSync(file).size; // taken before the spawn
    appendFileSync(file, 'EAPI:Invalid nonce\nsecond\n'); // the new process is quick
    const { lines } = follow(file, { fromEnd: false, fromOffset: start, pollMs: 60_000 });
    await waitFor(() => lines.length === 2, { what: 'the lines printed before start()' });
    expect(lines).toEqual(['EAPI:Invalid nonce', 'second']);
  });

  it('starts over after truncation, noticed once the file is back on inotify', async () => {
    const file = path.join(tmpDir(), 'a.log');
    writeFileSync(file, '');
    const clock = new ManualClock();
    const { lines } = follow(file, { group: new TailerGroup(clock) });
    appendFileSync(file, 'x'.repeat(100) + '\n');
    await waitFor(() => lines.length === 1);
    truncateSync(file, 0);
    appendFileSync(file, 'after\n');
    // On the shared timer, a file shorter than what was read is only "nothing new".
    await clock.run(2500, 250);
    expect(lines).toEqual(['x'.repeat(100)]);
    await clock.run(750, 250);
    await waitFor(() => lines.includes('after'), { what: 'line after truncation' });
  });

  it('rotates by size keeping every byte in order across the files, and at most N files', async () => {
    const file = path.join(tmpDir(), 'a.log');
    writeFileSync(file, '');
    const { t, lines } = follow(file, { maxBytes: 4096, files: 10 });
    let written = '';
    for (let round = 0; round < 3; round++) {
      const line = `round ${round} ` + 'y'.repeat(5000) + '\n';
      appendFileSync(file, line);
      written += line;
      t.readNew();
    }
    expect(lines.map((l) => l.slice(0, 7))).toEqual(['round 0', 'round 1', 'round 2']);
    const stream = [3, 2, 1].map((i) => (existsSync(`${file}.${i}`) ? readFileSync(`${file}.${i}`, 'utf8') : '')).join('') + readFileSync(file, 'utf8');
    expect(stream).toBe(written);
    expect(statSync(file).size).toBeLessThan(4096);

    const few = follow(path.join(tmpDir(), 'b.log'), { maxBytes: 4096, files: 2 });
    writeFileSync(few.t.path, '');
    for (let round = 0; round < 5; round++) {
      appendFileSync(few.t.path, 'z'.repeat(5000) + '\n');
      few.t.readNew();
    }
    expect(existsSync(`${few.t.path}.2`)).toBe(true);
    expect(existsSync(`${few.t.path}.3`)).toBe(false);
  });

  it('reads a printing bot on the shared timer with its file held open, and goes back to inotify (no descriptor) once it is quiet', async () => {
    const file = path.join(tmpDir(), 'a.log');
    writeFileSync(file, '');
    const opened = () => readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`) === file;
      } catch {
        return false;
      }
    }).length;
    const clock = new ManualClock();
    const { t, lines } = follow(file, { pollMs: 60_000, group: new TailerGroup(clock), quietMs: 600 });
    expect(opened()).toBe(0); // a silent bot costs no descriptor
    appendFileSync(file, 'first\n');
    await waitFor(() => lines.length === 1, { what: 'first line (inotify)' });
    const reads = vi.spyOn(t, 'readNew');
    // 20 lines over ~200 ms: one inotify wakeup each before; now nothing until the 250 ms timer.
    for (let i = 0; i < 20; i++) {
      appendFileSync(file, `line ${i}\n`);
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(lines.length).toBe(1);
    expect(opened()).toBe(1); // one descriptor, kept between reads
    clock.advance(250);
    expect(lines.length).toBe(21);
    expect(reads.mock.calls.length).toBe(1);
    expect(opened()).toBe(1);
    clock.advance(500);
    expect(opened()).toBe(1); // quiet for 500 ms: still on the timer
    clock.advance(250);
    expect(opened()).toBe(0); // quiet for 750 ms (quietMs 600): back to inotify
    appendFileSync(file, 'after\n');
    await waitFor(() => lines.includes('after'), { what: 'a line after going back to inotify' });
    t.stop();
    expect(opened()).toBe(0);
    expect(lines).toEqual(['first', ...Array.from({ length: 20 }, (_, i) => `line ${i}`), 'after']);
  });

  it('polls 100 files on one shared timer, each once per period', async () => {
    const dir = tmpDir();
    const clock = new ManualClock();
    const group = new TailerGroup(clock);
    const polled = new Map<string, number>();
    const ts = Array.from({ length: 100 }, (_, i) => {
      const file = path.join(dir, `${i}.log`);
      writeFileSync(file, '');
      const { t } = follow(file, { pollMs: 30_000, group });
      vi.spyOn(t, 'readNew').mockImplementation(() => void polled.set(file, (polled.get(file) ?? 0) + 1));
      return t;
    });
    expect(clock.pending).toBe(1); // not one timer per file
    for (let s = 0; s < 30; s++) clock.advance(1000);
    await new Promise((r) => setImmediate(r));
    expect(polled.size).toBe(100);
    expect([...polled.values()].every((n) => n === 1)).toBe(true);
    for (const t of ts) t.stop();
  });

  it('lastLines reads the tail of a big file without reading it all', () => {
    const file = path.join(tmpDir(), 'big.log');
    writeFileSync(file, Array.from({ length: 50_000 }, (_, i) => `line ${i}`).join('\n') + '\n');
    expect(lastLines(file, 3)).toBe('line 49997\nline 49998\nline 49999\n');
    expect(lastLines(file, 0)).toBe('');
    expect(lastLines(path.join(tmpDir(), 'none.log'), 5)).toBe('');
  });
});
