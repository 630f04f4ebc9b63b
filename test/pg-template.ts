/**
 * globalSetup: initdb once per test run, into a template data dir that test/pg-helper.ts copies for
 * each cluster (cp -a: the postgres user's files, 0700), instead of an initdb per cluster. It runs
 * while the first test files do; a file that needs a cluster sooner waits for it. The folder goes
 * at the end of the run.
 */
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { clusterBase, initdb, templatePaths } from './pg-cluster.js';

export default function setup(project: TestProject): () => Promise<void> {
  const root = mkdtempSync(path.join(clusterBase(), 'botwarden-pgtpl-'));
  const { building, ready, failed } = templatePaths(root);
  const made = initdb(root, building).then(
    () => renameSync(building, ready),
    (err: unknown) => writeFileSync(failed, (err as Error).stack ?? String(err)),
  );
  project.provide('pgTemplateRoot', root);
  return async () => {
    await made;
    rmSync(root, { recursive: true, force: true });
  };
}
