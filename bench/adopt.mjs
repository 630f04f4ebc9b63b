// A daemon that comes back to 50 live bots: how long until it serves its API, all adopted?
// Then 50 random-SIGKILL crash cycles with their figures.
import path from 'node:path';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { openStatHandle } from '../dist/host/procfs.js';
import { crashCycles, killTagged, liveBots } from './crash.mjs';
import { fmt, ROOT, stats, tmp } from './lib.mjs';

const CLI = path.join(ROOT, 'dist', 'cli.js');

function daemon(dir, cfg) {
  const child = spawn(process.execPath, [CLI, 'daemon', '--data-dir', dir, '--config', cfg, '--listen', '127.0.0.1:0'], {
    env: { ...process.env, BOTWARDEN_TOKEN: '', BOTWARDEN_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return { child, exited: new Promise((r) => child.once('exit', r)) };
}

/** Time from spawning the daemon until GET /bots answers with every bot running. */
async function untilServing(dir, d, t0, n) {
  const info = path.join(dir, 'daemon.json');
  let url;
  let token;
  for (;;) {
    if (!url && existsSync(info)) {
      try {
        const j = JSON.parse(readFileSync(info, 'utf8'));
        if (j.pid === d.child.pid) {
          url = j.url;
          token = readFileSync(path.join(dir, 'api-token'), 'utf8').trim();
        }
      } catch {}
    }
    if (url) {
      const res = await fetch(`${url}/bots`, { headers: { authorization: `Bearer ${token}` } });
      const body = await res.json();
      if (res.status === 200 && body.bots.filter((b) => b.state === 'running').length === n) return { ms: performance.now() - t0, url, token };
    }
    await sleep(1);
  }
}

export async function benchAdopt() {
  const N = 50;
  const tag = `adopt-${process.pid}`;
  const dir = tmp();
  const accounts = {};
  for (let i = 0; i < N; i++) accounts[`bot${i}`] = { command: ['sleep', '3600'], startMs: 10, stop: { graceMs: 2000 }, env: { CRASH_TAG: tag } };
  const cfg = path.join(dir, 'botwarden.yaml');
  writeFileSync(cfg, JSON.stringify({ accounts }));
  const rows = [];
  try {
    let d = daemon(dir, cfg);
    let s = await untilServing(dir, d, performance.now(), 0);
    await Promise.all(Object.keys(accounts).map((a) => fetch(`${s.url}/bots/${a}/start`, { method: 'POST', headers: { authorization: `Bearer ${s.token}` } })));
    await sleep(200);
    const times = [];
    for (let round = 0; round < 5; round++) {
      d.child.kill('SIGKILL');
      await d.exited;
      const t0 = performance.now();
      d = daemon(dir, cfg);
      s = await untilServing(dir, d, t0, N);
      times.push(s.ms);
    }
    const live = [...liveBots(tag).values()].flat().length;
    const t = stats(times);
    rows.push([`daemon restart -> API serving with ${N} live bots adopted`, `p50 ${fmt(t.p50)} max ${fmt(t.max)} (5 SIGKILL+restart rounds; includes Node start-up); ${live} bots alive, one each`, 'goal <= 1 s']);
    // The cost of watching adopted bots' exits: CPU of the idle daemon with 50 adopted bots.
    const before = readFileSync(`/proc/${d.child.pid}/stat`, 'latin1').split(') ')[1].split(' ');
    await sleep(5000);
    const after = readFileSync(`/proc/${d.child.pid}/stat`, 'latin1').split(') ')[1].split(' ');
    const ticks = Number(after[11]) + Number(after[12]) - Number(before[11]) - Number(before[12]);
    // The exit watch itself: one pread of a held-open /proc/<pid>/stat per bot, 4 times a second.
    const handles = [...liveBots(tag).values()].flat().map((pid) => openStatHandle(pid, null)).filter(Boolean);
    const t0 = performance.now();
    for (let i = 0; i < 1000; i++) for (const h of handles) h.alive();
    const perRound = (performance.now() - t0) / 1000;
    for (const h of handles) h.close();
    rows.push([
      `watching ${handles.length} adopted bots for exit (held-open /proc/<pid>/stat, every 250 ms)`,
      `${(perRound * 1000).toFixed(0)} us per round => ${((perRound * 4) / 10).toFixed(3)} % of a core; the whole idle daemon (exit polls, ${N} log tailers, 1 s duplicate scans, health events) ${((ticks / 100 / 5) * 100).toFixed(2)} % over 5 s`,
      'goal well under 1 %',
    ]);
    d.child.kill('SIGKILL');
    await d.exited;
  } finally {
    killTagged(tag);
    rmSync(dir, { recursive: true, force: true });
  }
  const t0 = performance.now();
  const f = await crashCycles({ cycles: 50 });
  const r = stats(f.readyMs);
  rows.push([
    '50 random-SIGKILL crash cycles (4 accounts, requests in flight)',
    `all invariants held; ${f.requestsInFlightAtKill} requests in flight at the kills; ${f.adopted} bot checks adopted live, ${f.buried} found stopped/dead; restart-to-ready p50 ${fmt(r.p50)} max ${fmt(r.max)}; ${((performance.now() - t0) / 1000).toFixed(1)} s, seed ${f.seed}`,
    f.leftBehind ? `LEFT BEHIND: ${f.leftBehind}` : 'nothing left behind',
  ]);
  return { rows };
}
