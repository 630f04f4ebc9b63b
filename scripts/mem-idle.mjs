#!/usr/bin/env node
// The daemon's memory with N idle bots, however it is started (docs/benchmarks.md, "Memory by way
// of starting"). Usage: node scripts/mem-idle.mjs <label> [N=50] -- <command that runs the daemon...>
// The command gets --config, --data-dir and --listen appended. Prints the PSS of the daemon and its
// helpers (the spawner; not the bots) and their sum MEM_SETTLE_S (45) s after the last start, then
// its V8 new space (from /metrics, scraped after the memory is read: the first scrape loads prom-client).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fmtMemory, memory } from '../bench/lib.mjs';

const sep = process.argv.indexOf('--');
const [label = 'daemon', nArg = '50'] = process.argv.slice(2, sep);
const cmd = process.argv.slice(sep + 1);
const N = Number(nArg);
const dir = mkdtempSync(path.join(tmpdir(), 'bw-mem-'));
const data = path.join(dir, 'data');
const accounts = Object.fromEntries(Array.from({ length: N }, (_, i) => [`mem${i}`, { command: ['sleep', '3600'], startMs: 10, stop: { graceMs: 2000 } }]));
writeFileSync(path.join(dir, 'bw.yaml'), JSON.stringify({ daemon: { minFreeBytes: 1048576 }, accounts }));
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BOTWARDEN_')));
const child = spawn(cmd[0], [...cmd.slice(1), '--config', path.join(dir, 'bw.yaml'), '--data-dir', data, '--listen', '127.0.0.1:0'], { env: { ...env, ...(process.env.BOTWARDEN_SEMI_SPACE_GROWTH ? { BOTWARDEN_SEMI_SPACE_GROWTH: process.env.BOTWARDEN_SEMI_SPACE_GROWTH } : {}), BOTWARDEN_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'ignore', 'inherit'] });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let info;
for (let i = 0; i < 300 && !info; i++) {
  await sleep(100);
  if (existsSync(path.join(data, 'daemon.json'))) info = JSON.parse(readFileSync(path.join(data, 'daemon.json'), 'utf8'));
}
const token = readFileSync(path.join(data, 'api-token'), 'utf8').trim();
const call = (m, u) => fetch(info.url + u, { method: m, headers: { authorization: `Bearer ${token}` } }).then((r) => r.json());
const ids = Object.keys(accounts);
// 100 requests in flight at most, as bench/scale.mjs starts its 1,000.
await Promise.all(Array.from({ length: 100 }, async () => {
  while (ids.length > 0) await call('POST', `/bots/${ids.pop()}/start`);
}));
await sleep(Number(process.env.MEM_SETTLE_S ?? 45) * 1000);
const mem = memory(info.pid);
const metrics = await fetch(info.url + '/metrics', { headers: { authorization: `Bearer ${token}` } }).then((r) => r.text());
const newSpace = Number(/^nodejs_heap_space_size_total_bytes\{space="new"\} (\d+)/m.exec(metrics)?.[1] ?? NaN) / 1048576;
const cmdline = readFileSync(`/proc/${info.pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
console.log(`${label.padEnd(28)} bots ${N}  ${fmtMemory(mem)}  V8 new space ${newSpace.toFixed(1)} MB   (${cmdline.replace(dir, '<tmp>')})`);
// SIGTERM stops every bot (daemon.onShutdown: stop-bots, the default).
process.kill(info.pid, 'SIGTERM');
await new Promise((r) => child.once('exit', r));
rmSync(dir, { recursive: true, force: true });
