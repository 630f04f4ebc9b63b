// `npm run build`: dist/ from src/ with esbuild, in about a second (type checking is
// `npm run typecheck`, tsc over src/ and test/; tsconfig.json's isolatedModules keeps every file
// transpilable on its own).
//
// 1. Every module on its own (dist/<path>.js), as tsc would emit it: the benches and scripts import
//    single modules (dist/db/pg-locks.js, dist/output/patterns.js, ...).
// 2. Over those, the three processes botwarden runs, bundled: dist/cli.js (the CLI and the daemon),
//    dist/host/spawner.js and dist/host/watchdog.js, with what they share and what the daemon loads
//    later (PostgreSQL mode, metrics, OpenAPI) in dist/bundle/. Third-party code is bundled too,
//    but for the native modules and what is loaded by name: a daemon starts on about half the CPU
//    of the unbundled modules (docs/benchmarks.md, "Bundled").
import { build } from 'esbuild';
import { readdirSync, rmSync } from 'node:fs';

const common = { format: 'esm', platform: 'node', target: 'node20', sourcemap: true, logLevel: 'warning' };

rmSync('dist', { recursive: true, force: true });
await build({
  ...common,
  entryPoints: readdirSync('src', { recursive: true }).filter((f) => f.endsWith('.ts')).map((f) => `src/${f}`),
  outdir: 'dist',
  outbase: 'src',
});
await build({
  ...common,
  entryPoints: { cli: 'src/cli.ts', 'host/spawner': 'src/host/spawner.ts', 'host/watchdog': 'src/host/watchdog.ts' },
  outdir: 'dist',
  chunkNames: 'bundle/[name]-[hash]',
  bundle: true,
  splitting: true,
  allowOverwrite: true,
  external: ['better-sqlite3', 'unix-dgram', 'pg-native', 'pino-pretty'],
  // Bundled CommonJS modules call require(): ESM has none, so each chunk makes its own.
  banner: { js: "import { createRequire as __bwRequire } from 'node:module'; const require = __bwRequire(import.meta.url);" },
});
