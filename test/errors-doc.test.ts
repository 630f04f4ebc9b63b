/**
 * docs/api.md's error table and src/errors.ts are one list (as fastify checks its error codes
 * against its docs): every code with its status, no more, no fewer.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { ERROR_CODES } from '../src/errors.js';
import { ROOT } from './helper.js';

it('every error code in src/errors.ts is in docs/api.md with the same status, and the table has nothing else', () => {
  const doc = readFileSync(path.join(ROOT, 'docs', 'api.md'), 'utf8');
  const section = doc.slice(doc.indexOf('## Errors'), doc.indexOf('\n## ', doc.indexOf('## Errors') + 1));
  const rows = [...section.matchAll(/^\| `([A-Z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1], Number(m[2])]);
  expect(Object.fromEntries(rows)).toEqual({ ...ERROR_CODES });
  expect(rows.map(([c]) => c)).toEqual(Object.keys(ERROR_CODES)); // same order: the doc reads like the code
});
