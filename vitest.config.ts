import { defineConfig } from 'vitest/config';
import LongestFirst from './test/sequencer.js';

export default defineConfig({
  test: {
    pool: 'forks',
    // A worker process runs file after file (isolate off): the daemon's modules load once per
    // worker, not once per file (~0.6 CPU-s each). Files still run one per worker at a time, each
    // in its own BOTWARDEN_SCOPE, and every file closes what it started (its afterEach sweeps).
    poolOptions: { forks: { isolate: false } },
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Files mostly wait on processes, timers and sockets. On 2 cores, 5 at once (84 s) beat 4 (89 s)
    // and 3 (96 s) with the suite at ~140 CPU-s. minWorkers = maxWorkers: vitest 3.2 ends surplus
    // idle workers in a way that reports "Terminating worker thread" when isolate is off.
    maxWorkers: 5,
    minWorkers: 5,
    // Each file hunts only its own BOTWARDEN_SCOPE (test/setup-scope.ts), so files run in parallel.
    setupFiles: ['test/setup-scope.ts'],
    // initdb once per run: a template data dir every PostgreSQL cluster of the run is copied from.
    globalSetup: ['test/pg-template.ts'],
    // The longest files first, with or without the durations of a last run (a fresh clone).
    sequence: { sequencer: LongestFirst },
    projects: [
      { extends: true, test: { name: 'shared', include: ['test/**/*.test.ts'], exclude: ['test/lazy.test.ts'] } },
      // It looks at which packages this process has loaded: a worker of its own, fresh.
      { extends: true, test: { name: 'isolated', include: ['test/lazy.test.ts'], isolate: true, poolOptions: { forks: { isolate: true } } } },
    ],
  },
});
