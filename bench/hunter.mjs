// Duplicate hunter: detection latency at scanIntervalMs 500, and the scan's CPU cost with
// 400 extra idle processes on the machine at a 1 s interval.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BOT, fmt, startDaemon, stats } from './lib.mjs';

function cpuTicks(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]);
}

async function idleCpu(pid, ms) {
  const a = cpuTicks(pid);
  await sleep(ms);
  return ((cpuTicks(pid) - a) / 100 / (ms / 1000)) * 100;
}

export async function benchHunter() {
  const rows = [];
  const id = `bench-dup-${process.pid}`;
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BOTWARDEN_')));
  // Detection latency: hand-started copies (no env marker; found by `match`) at a 500 ms interval.
  {
    const d = await startDaemon({ hunted: { command: ['node', BOT, '--id', id], match: id, stop: { graceMs: 2000 } } }, [], { scanIntervalMs: 500 });
    const lat = [];
    const seen = new Set();
    try {
      for (let i = 0; i < 10; i++) {
        const t0 = performance.timeOrigin + performance.now();
        const copy = spawn(process.execPath, [BOT, '--id', id], { env: clean, stdio: 'ignore' });
        const exited = new Promise((r) => copy.once('exit', r));
        let ev;
        while (!ev) {
          const h = await d.req('GET', '/events/history?types=duplicate.detected');
          ev = h.body.events.find((e) => e.pid === copy.pid && !seen.has(e.id));
          if (!ev) await sleep(5);
        }
        seen.add(ev.id);
        lat.push(Date.parse(ev.at) - t0);
        await exited;
        await sleep(Math.random() * 500); // land at a random phase of the scan interval
      }
    } finally {
      await d.stop();
      d.cleanup();
    }
    const s = stats(lat);
    rows.push(['duplicate detection latency, scanIntervalMs 500 (10 hand-started copies)', `p50 ${fmt(s.p50)} max ${fmt(s.max)}`, 'goal <= 1 s']);
  }
  // Scan cost with 400 extra idle processes.
  {
    const idle = Array.from({ length: 400 }, () => spawn('sleep', ['120'], { stdio: 'ignore' }));
    try {
      await sleep(1000);
      const withScan = await startDaemon({ hunted: { command: ['node', BOT], match: id } }, [], { scanIntervalMs: 1000, healthIntervalMs: 3_600_000 });
      try {
        await sleep(6000); // steady state: the 400 processes are no longer young
        const h0 = (await withScan.req('GET', '/health')).body.checks.find((c) => c.name === 'duplicates').detail;
        const cpu = await idleCpu(withScan.pid, 20_000);
        const h1 = (await withScan.req('GET', '/health')).body.checks.find((c) => c.name === 'duplicates').detail;
        // The scan is synchronous, so its wall time is its CPU time: mean scan ms per 1000 ms interval.
        const scansOf = (t) => Number(/(\d+) scans/.exec(t)[1]);
        const meanOf = (t) => Number(/mean ([\d.]+) ms/.exec(t)[1]);
        const n0 = scansOf(h0), n1 = scansOf(h1);
        const steadyMean = (meanOf(h1) * n1 - meanOf(h0) * n0) / (n1 - n0);
        rows.push([
          `scan cost with ${idle.length} extra idle processes, 1 s interval`,
          `${steadyMean.toFixed(2)} ms per scan over ${n1 - n0} steady-state scans => ${(steadyMean / 10).toFixed(2)} % of a core; whole idle daemon ${cpu.toFixed(2)} % (process CPU ticks over 20 s, 0.05 % resolution); first scan of a fresh daemon reads every process once`,
          'goal <= 0.5 %',
        ]);
      } finally {
        await withScan.stop();
        withScan.cleanup();
      }
    } finally {
      for (const c of idle) c.kill('SIGKILL');
    }
  }
  return { rows };
}
