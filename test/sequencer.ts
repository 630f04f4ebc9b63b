/**
 * The longest test files start first, so that no long file starts last and runs alone at the end.
 * Vitest's own order does this from the durations it cached in the last run; a fresh clone has
 * none, and its fallback (larger files first) puts the chaos walks (short files, the longest runs)
 * last. Here a file's duration is the larger of the cached one and the estimate below (seconds,
 * measured with 2-4 files at once on 2 cores); 0 for a file in neither.
 */
import path from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

const ESTIMATE_S: Record<string, number> = {
  'test/pg-faults.test.ts': 41,
  'test/chaos-pg.test.ts': 36,
  'test/chaos.test.ts': 35,
  'test/pg.test.ts': 31,
  'test/crash.test.ts': 20,
  'test/liveness.test.ts': 18,
  'test/faults.test.ts': 18,
  'test/cli.test.ts': 14,
  'test/metrics-alerts.test.ts': 12,
  'test/install.test.ts': 9,
  'test/daemon.test.ts': 8,
  'test/dashboard.test.ts': 8,
  'test/storage.test.ts': 7,
  'test/scale.test.ts': 7,
  'test/duplicates.test.ts': 7,
  'test/spawner.test.ts': 6,
  'test/defects.test.ts': 6,
};

export default class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const root = this.ctx.config.root;
    const ms = (spec: TestSpecification): number => {
      const rel = path.relative(root, spec.moduleId).split(path.sep).join('/');
      const cached = this.ctx.cache.getFileTestResults(`${spec.project.name}:${rel}`)?.duration ?? 0;
      // The larger: a run of a few tests of a long file (-t) caches a short duration for it.
      return Math.max(cached, (ESTIMATE_S[rel] ?? 0) * 1000);
    };
    return [...files].sort((a, b) => ms(b) - ms(a));
  }
}
