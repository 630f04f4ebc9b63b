import { defineConfig } from 'vitest/config';
import LongestFirst from './test/sequencer.js';

export default defineConfig({
  test: {
    pool: 'forks',
    poolOptions: { forks: { isolate: false } },
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Files mostly wait on processes, timers and sockets: 3 at once keeps 2 cores busy (2 at once
    // left them a third idle). The suite is then CPU-bound (daemon start-ups, schema compiles): 4 at
    // once took as long (128 s against 130 s), burnt 7% more CPU in longer waits, and made timing
    // more fragile.
    maxWorkers: 4,
    minWorkers: 4,
    // Each file hunts only its own BOTWARDEN_SCOPE (test/setup-scope.ts), so files run in parallel.
    setupFiles: ['test/setup-scope.ts'],
    // initdb once per run: a template data dir every PostgreSQL cluster of the run is copied from.
    globalSetup: ['test/pg-template.ts'],
    // The longest files first, with or without the durations of a last run (a fresh clone).
    sequence: { sequencer: LongestFirst },
    projects: [
      { extends: true, test: { name: 'shared', include: ['test/**/*.test.ts'], exclude: ['test/lazy.test.ts'], isolate: false } },
      { extends: true, test: { name: 'isolated', include: ['test/lazy.test.ts'], isolate: true } },
    ],
  },
});
