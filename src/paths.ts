import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The package root: the nearest folder above this module with a package.json. This module is
 * src/paths.ts under vitest, dist/paths.js built by tsc, and part of a chunk under dist/ once
 * bundled, so a fixed `..` would not do.
 */
function packageRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (let dir = here; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return path.dirname(here);
  }
}

export const PACKAGE_ROOT = packageRoot();
export const MIGRATIONS_DIR = path.join(PACKAGE_ROOT, 'migrations');
export const DASHBOARD_DIR = path.join(PACKAGE_ROOT, 'dashboard');
/** A helper process's built script: dist/host/<name>.js, also when running from the sources (tests). */
export const HOST_SCRIPT = (name: 'spawner' | 'watchdog'): string => path.join(PACKAGE_ROOT, 'dist', 'host', `${name}.js`);
