import { existsSync } from 'node:fs';
import { expect, it } from 'vitest';
// Plain JS shared with `npm run bench` (which runs 50 cycles).
// @ts-expect-error no type declarations for the bench module
import { crashCycles } from '../bench/crash.mjs';
import { CLI } from './proc-helper.js';

it('20 random SIGKILLs of the daemon mid-flight: never two processes per account, no orphan, no stale lock, all stoppable', async () => {
  expect(existsSync(CLI)).toBe(true);
  const seed = Number(process.env.CRASH_SEED ?? Date.now() % 1e9);
  const figures = await crashCycles({ cycles: Number(process.env.CRASH_CYCLES ?? 20), seed });
  expect(figures.cycles).toBe(Number(process.env.CRASH_CYCLES ?? 20));
  expect(figures.leftBehind).toBeUndefined();
}, 180_000);
