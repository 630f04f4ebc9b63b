import { defineConfig } from 'vitest/config';
import LongestFirst from './test/sequencer.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Tests spawn real processes and time real signals: keep files from starving each other on 2 cores.
    maxWorkers: 2,
    // Each file hunts only its own BOTWARDEN_SCOPE (test/setup-scope.ts), so files run in parallel.
    setupFiles: ['test/setup-scope.ts'],
    // initdb once per run: a template data dir every PostgreSQL cluster of the run is copied from.
    globalSetup: ['test/pg-template.ts'],
    // The longest files first, with or without the durations of a last run (a fresh clone).
    sequence: { sequencer: LongestFirst },
  },
});
