#!/usr/bin/env node
// What each module costs the daemon in memory (docs/benchmarks.md, "Memory by module"). The steps
// run in order in one fresh `node --expose-gc`: a step imports a module (or does what the daemon
// does with it: load a config, build the HTTP server, answer the first GET /openapi.json or
// /metrics), then the process collects its garbage and reads its own /proc/self/smaps_rollup. A
// step's cost is what it adds to the steps before it: RSS, the private part of it (anonymous memory
// and pages no other process maps: not the Node binary's), and the V8 heap in use. Each figure is
// the median of RUNS (5) fresh processes.
// Usage: npm run build && node scripts/mem-modules.mjs
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const RUNS = Number(process.env.RUNS ?? 5);
const dist = (p) => pathToFileURL(path.join(ROOT, 'dist', p)).href;

/** [label, what it does]: an import (a package, or one of ours from dist/) or a step of the daemon's. */
const STEPS = [
  ['node:http, node:child_process, node:crypto, ... (Node built-ins the daemon uses)', 'builtins'],
  ['commander (the CLI)', 'import:commander'],
  ['pino', 'import:pino'],
  ['better-sqlite3', 'import:better-sqlite3'],
  ['yaml', 'import:yaml'],
  ['dotenv', 'import:dotenv'],
  ['@sinclair/typebox (schemas)', 'import:@sinclair/typebox'],
  ['@sinclair/typebox/value (config defaults and errors)', 'import:@sinclair/typebox/value'],
  ['fastify (with ajv, fast-json-stringify, find-my-way, avvio, semver)', 'import:fastify'],
  ['@fastify/websocket (ws)', 'import:@fastify/websocket'],
  ['croner', 'import:croner'],
  ["botwarden's own modules (dist/daemon.js and what it imports)", 'daemon'],
  ['a config of 50 accounts loaded (YAML parsed, defaults, validation)', 'config'],
  ['the state database opened (SQLite, WAL, migrations)', 'database'],
  ['the HTTP server built: every route and its validators (since issue 22 its serializers on first use)', 'server'],
  ['first GET /openapi.json: @fastify/swagger, the document built on its own instance', 'openapi'],
  ['first GET /metrics: prom-client, its collectors and default metrics', 'metrics'],
  ['pg (PostgreSQL mode only)', 'import:pg'],
  ['pino-pretty (on a terminal only)', 'import:pino-pretty'],
];

async function child() {
  // As `botwarden daemon` does before it loads anything (src/cli.ts): the young generation stays at 1 MB.
  (await import('node:v8')).default.setFlagsFromString('--semi-space-growth-factor=1');
  const require = createRequire(path.join(ROOT, 'package.json'));
  const dir = mkdtempSync(path.join(tmpdir(), 'bw-memmod-'));
  const read = () => {
    globalThis.gc();
    globalThis.gc();
    const t = readFileSync('/proc/self/smaps_rollup', 'utf8');
    const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(t)?.[1] ?? 0);
    const mu = process.memoryUsage();
    return { rss: kb('Rss'), priv: kb('Private_Clean') + kb('Private_Dirty'), heap: mu.heapUsed / 1024, heapTotal: mu.heapTotal / 1024 };
  };
  const ctx = {};
  const run = {
    builtins: async () => {
      for (const m of ['http', 'net', 'child_process', 'crypto', 'fs', 'os', 'path', 'url', 'events', 'stream', 'timers/promises', 'perf_hooks', 'v8', 'dgram']) await import(`node:${m}`);
    },
    daemon: () => import(dist('daemon.js')),
    config: async () => {
      const accounts = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`acct${i}`, { command: ['sleep', '3600'], stop: { graceMs: 2000 } }]));
      const file = path.join(dir, 'botwarden.yaml');
      writeFileSync(file, JSON.stringify({ accounts }));
      const { loadConfigFile } = await import(dist('config/load.js'));
      ctx.config = loadConfigFile(file, { PATH: process.env.PATH });
    },
    database: async () => {
      const { openDatabase } = await import(dist('db/open.js'));
      ctx.db = openDatabase(path.join(dir, 'botwarden.db'));
    },
    server: async () => {
      const { buildServer } = await import(dist('http/server.js'));
      const { Metrics } = await import(dist('metrics/metrics.js'));
      const { default: pino } = await import('pino');
      const supervisor = { list: () => [], all: () => [], get: () => null, onLine: () => () => undefined };
      const events = { emit: () => ({}), durable: async () => true, subscribe: () => () => undefined, history: () => [] };
      const keys = { list: async () => [] };
      ctx.app = await buildServer({
        supervisor,
        keys,
        events,
        health: { snapshot: async () => ({ status: 'ok', checks: [] }) },
        token: 'mem-modules-token',
        listenHost: '127.0.0.1',
        allowedHosts: [],
        logger: pino({ level: 'silent' }),
        version: '0.0.0',
        reloadConfig: async () => ({ accounts: [] }),
        leases: () => [],
        metrics: new Metrics({ supervisor, keys, events, version: '0.0.0' }),
        alerts: { list: () => [], test: () => false },
      });
      await ctx.app.ready();
    },
    openapi: () => get('/openapi.json'),
    metrics: () => get('/metrics'),
  };
  const get = async (url) => {
    const res = await ctx.app.inject({ method: 'GET', url, headers: { host: '127.0.0.1', authorization: 'Bearer mem-modules-token' } });
    if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode} ${res.body}`);
  };
  let last = read();
  const out = [{ step: 'node', ...last }];
  for (const [label, what] of STEPS) {
    if (what.startsWith('import:')) await import(require.resolve(what.slice(7)).endsWith('.mjs') ? pathToFileURL(require.resolve(what.slice(7))).href : what.slice(7));
    else await run[what]();
    await new Promise((r) => setTimeout(r, 20));
    const now = read();
    out.push({ step: label, rss: now.rss - last.rss, priv: now.priv - last.priv, heap: now.heap - last.heap, heapTotal: now.heapTotal - last.heapTotal });
    last = now;
  }
  out.push({ step: 'total', ...last });
  await ctx.app?.close();
  ctx.db?.close();
  rmSync(dir, { recursive: true, force: true });
  process.stdout.write(JSON.stringify(out));
}

if (process.argv[2] === '--child') {
  await child();
} else {
  const runs = [];
  for (let i = 0; i < RUNS; i++) runs.push(JSON.parse(execFileSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--child'], { cwd: ROOT, encoding: 'utf8' })));
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const mb = (kb) => `${(kb / 1024).toFixed(1)} MB`;
  console.log(`Node ${process.version}, median of ${RUNS} fresh processes\n`);
  console.log('| step | RSS | private | V8 heap used | V8 heap committed |\n|---|---:|---:|---:|---:|');
  runs[0].forEach((r, i) => {
    const m = (k) => median(runs.map((run) => run[i][k]));
    const label = r.step === 'node' ? 'Node itself (an empty script)' : r.step === 'total' ? '**total**' : r.step;
    console.log(`| ${label} | ${mb(m('rss'))} | ${mb(m('priv'))} | ${mb(m('heap'))} | ${mb(m('heapTotal'))} |`);
  });
}
