import { appendFileSync, existsSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { lastLines, LogTailer } from '../src/output/tailer.js';
import { tmpDir, waitFor } from './helper.js';

const tailers: LogTailer[] = [];
afterEach(() => {
  for (const t of tailers.splice(0)) t.stop();
});

function follow(file: string, opts: Partial<ConstructorParameters<typeof LogTailer>[2]> = {}) {
  const lines: string[] = [];
  const t = new LogTailer(file, (l) => lines.push(l), { maxBytes: 1 << 20, files: 3, fromEnd: true, pollMs: 50, ...opts });
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

  it('starts over after truncation', async () => {
    const file = path.join(tmpDir(), 'a.log');
    writeFileSync(file, '');
    const { lines } = follow(file);
    appendFileSync(file, 'x'.repeat(100) + '\n');
    await waitFor(() => lines.length === 1);
    truncateSync(file, 0);
    appendFileSync(file, 'after\n');
    await waitFor(() => lines.includes('after'), { what: 'line after truncation' });
  });

  it('rotates by size, copy-then-truncate, keeping N files', async () => {
    const file = path.join(tmpDir(), 'a.log');
    writeFileSync(file, '');
    const { t, lines } = follow(file, { maxBytes: 4096, files: 2 });
    for (let round = 0; round < 3; round++) {
      appendFileSync(file, `round ${round} ` + 'y'.repeat(5000) + '\n');
      t.readNew();
    }
    expect(lines).toHaveLength(3);
    expect(readFileSync(file, 'utf8')).toBe('');
    expect(readFileSync(`${file}.1`, 'utf8')).toMatch(/^round 2/);
    expect(readFileSync(`${file}.2`, 'utf8')).toMatch(/^round 1/);
    expect(existsSync(`${file}.3`)).toBe(false);
  });

  it('lastLines reads the tail of a big file without reading it all', () => {
    const file = path.join(tmpDir(), 'big.log');
    writeFileSync(file, Array.from({ length: 50_000 }, (_, i) => `line ${i}`).join('\n') + '\n');
    expect(lastLines(file, 3)).toBe('line 49997\nline 49998\nline 49999\n');
    expect(lastLines(file, 0)).toBe('');
    expect(lastLines(path.join(tmpDir(), 'none.log'), 5)).toBe('');
  });
});
