import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Tests spawn real processes and time real signals: keep files from starving each other on 2 cores.
    maxWorkers: 2,
    // One file at a time: every test daemon hunts duplicates machine-wide (as a real one must),
    // so two files running bots of the same account id would rightly kill each other's.
    fileParallelism: false,
  },
});
