// Bundles the three processes botwarden runs (the CLI and daemon, the spawner, the watchdog) over
// tsc's per-module output in dist/. See docs/benchmarks.md ("Bundled").
import { build } from 'esbuild';
import { rmSync } from 'node:fs';

const external = process.env.BUNDLE_MODE === 'ours' ? ['./node_modules/*'] : [];
rmSync('dist/bundle', { recursive: true, force: true });
await build({
  entryPoints: { cli: 'src/cli.ts', 'host/spawner': 'src/host/spawner.ts', 'host/watchdog': 'src/host/watchdog.ts' },
  outdir: 'dist',
  chunkNames: 'bundle/[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  packages: process.env.BUNDLE_MODE === 'ours' ? 'external' : undefined,
  external: [...external, 'better-sqlite3', 'unix-dgram', 'pg-native', 'pino-pretty'],
  banner: { js: "import { createRequire as __bwRequire } from 'node:module'; const require = __bwRequire(import.meta.url);" },
  sourcemap: true,
  logLevel: 'warning',
});
