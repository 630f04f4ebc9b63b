#!/usr/bin/env node
// The memory floor of the daemon's shape (docs/benchmarks.md, "Memory by module"): a Node process
// that imports what the daemon imports and does nothing else, with a child Node process forked the
// way the spawner is (a bare script named spawner.js, --max-semi-space-size=1), both idle. Prints the
// PSS of the pair 20 s later, as bench/lib.mjs memory() reads it, for four steps: nothing
// imported, the daemon's third-party modules, those plus botwarden's own (dist/daemon.js), and the
// bundled daemon as `botwarden daemon` loads it (dist/bundle/daemon-*.js; the spawner with its flags).
// Usage: npm run build && node scripts/mem-floor.mjs   (bench/peers.mjs prints the last step too)
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { fmtMemory, memory } from '../bench/lib.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const require = createRequire(path.join(ROOT, 'package.json'));
const url = (spec) => pathToFileURL(require.resolve(spec)).href;
const THIRD_PARTY = ['commander', 'pino', 'better-sqlite3', 'yaml', 'dotenv', 'fastify', '@fastify/websocket', 'croner'].map(url);
// TypeBox's ESM build, as the daemon (an ES module) loads it.
const TYPEBOX = ['index.mjs', 'value/index.mjs'].map((f) => pathToFileURL(path.join(path.dirname(require.resolve('@sinclair/typebox')), '..', 'esm', f)).href);
const OURS = [pathToFileURL(path.join(ROOT, 'dist', 'daemon.js')).href];
/** The daemon's code as the built CLI loads it: its bundle chunk (and the chunks that one imports). */
export const BUNDLED = () => readdirSync(path.join(ROOT, 'dist', 'bundle')).filter((f) => /^daemon-.*\.js$/.test(f)).map((f) => pathToFileURL(path.join(ROOT, 'dist', 'bundle', f)).href);
/** The spawner's flags, as the daemon forks it. */
export const { SPAWNER_EXEC_ARGV: SPAWNER_FLAGS } = await import('../dist/host/spawner-client.js');

export async function floor(label, imports, spawnerFlags = ['--max-semi-space-size=1'], print = true) {
  const dir = mkdtempSync(path.join(tmpdir(), 'bw-floor-'));
  writeFileSync(path.join(dir, 'spawner.js'), 'process.on("message", () => {});\nsetInterval(() => {}, 1e9);\n');
  writeFileSync(
    path.join(dir, 'daemon.mjs'),
    [
      "import v8 from 'node:v8';",
      "import { fork } from 'node:child_process';",
      "v8.setFlagsFromString('--semi-space-growth-factor=1');",
      ...imports.map((u) => `await import(${JSON.stringify(u)});`),
      `fork(${JSON.stringify(path.join(dir, 'spawner.js'))}, [], { execArgv: ${JSON.stringify(spawnerFlags)}, env: {}, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });`,
      'setInterval(() => {}, 1e9);',
    ].join('\n'),
  );
  const child = spawn(process.execPath, [path.join(dir, 'daemon.mjs')], { stdio: ['ignore', 'ignore', 'inherit'] });
  await new Promise((r) => setTimeout(r, 20_000));
  const m = memory(child.pid);
  if (print) console.log(`- ${label}: ${fmtMemory(m)}`);
  for (const p of m.procs.slice(1)) process.kill(p.pid, 'SIGKILL');
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
  return m;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(`Node ${process.version}: a Node process and a forked Node child, idle, 20 s after the imports`);
  await floor('nothing imported', []);
  await floor("the daemon's third-party modules imported", [...THIRD_PARTY, ...TYPEBOX]);
  await floor('those and botwarden (dist/daemon.js) imported', [...THIRD_PARTY, ...TYPEBOX, ...OURS]);
  await floor('the bundled daemon (dist/bundle/daemon-*.js) imported, the spawner with its flags', BUNDLED(), SPAWNER_FLAGS);
}
