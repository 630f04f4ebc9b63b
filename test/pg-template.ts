/**
 * globalSetup: initdb once per test run, into a template data dir that test/pg-helper.ts copies for
 * each cluster (cp -a: the postgres user's files, 0700), instead of an initdb per cluster. It runs
 * while the first test files do; a file that needs a cluster sooner waits for it. The folder goes
 * at the end of the run; one left by a run that was killed (its vitest pid gone) goes at the next.
 */
import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { clusterBase, initdb, templatePaths } from './pg-cluster.js';

const PREFIX = 'botwarden-pgtpl-';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Templates of earlier runs that did not get to their teardown. */
function removeOrphans(base: string): void {
  for (const name of readdirSync(base)) {
    if (!name.startsWith(PREFIX)) continue;
    const dir = path.join(base, name);
    let owner: number;
    try {
      owner = Number(readFileSync(path.join(dir, 'owner'), 'utf8'));
    } catch {
      // no owner file: one being made right now, or not ours
      continue;
    }
    if (Number.isInteger(owner) && owner > 0 && !alive(owner)) rmSync(dir, { recursive: true, force: true });
  }
}

export default function setup(project: TestProject): () => Promise<void> {
  const base = clusterBase();
  removeOrphans(base);
  const root = mkdtempSync(path.join(base, PREFIX));
  writeFileSync(path.join(root, 'owner'), String(process.pid));
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
