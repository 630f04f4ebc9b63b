// Peers, run by hand (`npm run bench -- peers`; not in CI): the same 50-bot scenario under
// supervisord (Debian's `supervisor` package, when installed), PM2 (npm `pm2`, installed into a temp
// dir here) and botwarden: start all, idle CPU, RSS and PSS (bench/lib.mjs memory()), stop all. Bots are `sleep 3600`.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { floor, SPAWNER_FLAGS } from '../scripts/mem-floor.mjs';
import { fmtMemory, memory, spawnerPid, startDaemon, steadyCpu, tmp } from './lib.mjs';

const N = Number(process.env.PEERS_N ?? 50);
const TAG = `peers-${process.pid}`;

const procs = () => {
  // Our sleeps: argv `sleep 3600` with our tag in the environment.
  const out = [];
  for (const name of execFileSync('ls', ['/proc']).toString().split('\n')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (!readFileSync(`/proc/${name}/environ`, 'latin1').includes(`PEERS_TAG=${TAG}`)) continue;
      const st = readFileSync(`/proc/${name}/stat`, 'latin1');
      const s = st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3);
      if (s !== 'Z' && readFileSync(`/proc/${name}/comm`, 'latin1').trim() === 'sleep') out.push(Number(name));
    } catch {}
  }
  return out;
};
const rss = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
async function until(pred, ms = 120_000) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('timeout');
    await sleep(5);
  }
}
async function measure(name, pid, startAll, stopAll) {
  const t0 = performance.now();
  await startAll();
  await until(() => procs().length === N);
  const startMs = performance.now() - t0;
  // The same measure for every supervisor: median of 3 x 5 s windows after 45 s, in ns of CPU
  // (with botwarden's spawner counted in).
  const helper = name === 'botwarden' ? spawnerPid(pid) : undefined;
  // PSS of the supervisor and its helpers (botwarden's spawner), 45 s after the starts.
  const { cpu: idle, settled: pss } = await steadyCpu(helper === undefined ? [pid] : [pid, helper], { onSettled: () => memory(pid) });
  const mem = rss(pid);
  const t1 = performance.now();
  await stopAll();
  await until(() => procs().length === 0);
  return { name, startMs, idle, mem, pss, stopMs: performance.now() - t1 };
}

async function supervisord() {
  if (!existsSync('/usr/bin/supervisord')) return null;
  const dir = tmp('bw-sup-');
  const conf = path.join(dir, 'supervisord.conf');
  let text = `[unix_http_server]\nfile=${dir}/sock\n[supervisord]\nlogfile=${dir}/sup.log\npidfile=${dir}/sup.pid\nnodaemon=true\n[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n[supervisorctl]\nserverurl=unix://${dir}/sock\n`;
  for (let i = 0; i < N; i++) text += `[program:s${i}]\ncommand=sleep 3600\nautostart=false\nstartsecs=0\nstopwaitsecs=5\nenvironment=PEERS_TAG="${TAG}"\nstdout_logfile=${dir}/s${i}.log\nredirect_stderr=true\n`;
  writeFileSync(conf, text);
  const child = spawn('/usr/bin/supervisord', ['-c', conf], { stdio: 'ignore' });
  await until(() => existsSync(`${dir}/sock`), 10_000);
  const ctl = (...a) => execFileSync('/usr/bin/supervisorctl', ['-c', conf, ...a], { stdio: 'ignore' });
  try {
    return await measure('supervisord', child.pid, async () => ctl('start', 'all'), async () => ctl('stop', 'all'));
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

async function pm2() {
  const dir = tmp('bw-pm2-');
  try {
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--prefix', dir, 'pm2'], { stdio: 'ignore' });
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return null;
  }
  const bin = path.join(dir, 'node_modules', '.bin', 'pm2');
  const env = { ...process.env, PM2_HOME: path.join(dir, 'home'), PEERS_TAG: TAG };
  const apps = Array.from({ length: N }, (_, i) => ({ name: `s${i}`, script: 'sleep', args: '3600', interpreter: 'none', autorestart: false, env: { PEERS_TAG: TAG } }));
  writeFileSync(path.join(dir, 'eco.config.js'), `module.exports = ${JSON.stringify({ apps })};`);
  const run = (...a) => execFileSync(bin, a, { env, cwd: dir, stdio: 'ignore' });
  run('ping'); // starts the God daemon
  const god = Number(readFileSync(path.join(dir, 'home', 'pm2.pid'), 'utf8'));
  try {
    return await measure('PM2', god, async () => run('start', 'eco.config.js'), async () => run('stop', 'all'));
  } finally {
    run('kill');
    rmSync(dir, { recursive: true, force: true });
  }
}

async function botwarden() {
  const accounts = {};
  for (let i = 0; i < N; i++) accounts[`s${i}`] = { command: ['sleep', '3600'], startMs: 10, stop: { graceMs: 5000 }, env: { PEERS_TAG: TAG } };
  const d = await startDaemon(accounts);
  try {
    const ids = Object.keys(accounts);
    return await measure(
      'botwarden',
      d.pid,
      async () => void (await Promise.all(ids.map((a) => d.fast('POST', `/bots/${a}/start`)))),
      async () => void (await Promise.all(ids.map((a) => d.fast('POST', `/bots/${a}/stop`)))),
    );
  } finally {
    await d.stop('SIGTERM');
    d.cleanup();
  }
}

async function emptyDaemon() {
  const d = await startDaemon({});
  try {
    await sleep(45_000);
    return memory(d.pid);
  } finally {
    await d.stop('SIGTERM');
    d.cleanup();
  }
}

/** The PSS sum on a quiet machine when it can be computed, else the kernel's. */
const pssOf = (r) => r.pss.quiet ?? r.pss.pss;

export async function benchPeers() {
  const results = [await botwarden(), ...(process.env.PEERS_ONLY === 'botwarden' ? [] : [await supervisord(), await pm2()])].filter(Boolean);
  const bw = results[0];
  const rows = [];
  for (const r of results) {
    rows.push([
      r.name,
      `start ${N}: ${r.startMs.toFixed(0)} ms`,
      `idle ${r.idle.toFixed(2)} %`,
      `RSS ${r.mem.toFixed(0)} MB`,
      fmtMemory(r.pss),
      `stop all: ${r.stopMs.toFixed(0)} ms`,
      r === bw ? 'reference' : `botwarden/peer: start ${(bw.startMs / r.startMs).toFixed(2)}x, RSS ${(bw.mem / r.mem).toFixed(2)}x, PSS ${(pssOf(bw) / pssOf(r)).toFixed(2)}x, stop ${(bw.stopMs / r.stopMs).toFixed(2)}x`,
    ]);
  }
  // Under botwarden's figure (docs/benchmarks.md, "Memory by module"): its shape (two Node
  // processes, the daemon and its forked spawner) idle with nothing loaded, and the daemon itself
  // with no bot, 45 s after it started, read the same way.
  const bare = await floor('floor', [], SPAWNER_FLAGS, false);
  const empty = await emptyDaemon();
  const quiet = (m) => m.quiet ?? m.pss;
  rows.push(['floor: two idle Node processes (a process and its forked child), nothing loaded', fmtMemory(bare)]);
  rows.push(['botwarden with no bot (all its modules loaded and initialized), 45 s after its start', fmtMemory(empty), `the floor + ${(quiet(empty) - quiet(bare)).toFixed(1)} MB; ${N} bots add ${(pssOf(bw) - quiet(empty)).toFixed(1)} MB`]);
  return { rows };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { rows } = await benchPeers();
  for (const r of rows) console.log(`- ${r.join(' — ')}`);
}
