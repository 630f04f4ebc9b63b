// Output scanning: can the daemon keep up with a bot printing 10,000 lines a second
// (1 % of them nonce errors)? And the raw cost of matching a line against every preset.
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { compilePatterns, firstMatch, NONCE_PRESETS } from '../dist/output/patterns.js';
import { ROOT, startDaemon } from './lib.mjs';

const FLOOD = path.join(ROOT, 'test', 'fixtures', 'flood.js');

function cpuTicks(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]);
}

export async function benchScan() {
  const rows = [];
  // Pure matching cost.
  const all = compilePatterns(Object.keys(NONCE_PRESETS));
  const line = '2026-11-23T10:00:00.000Z tick seq=123456 XBTUSD 61234.5 bid 61234.4 ask 61234.6';
  const N = 1_000_000;
  let hits = 0;
  const t0 = performance.now();
  for (let i = 0; i < N; i++) if (firstMatch(all, line)) hits++;
  const perLine = ((performance.now() - t0) * 1e6) / N;
  rows.push([`matching one ordinary line against all ${all.length} preset regexes`, `${perLine.toFixed(0)} ns/line => ${(1e9 / perLine / 1000).toFixed(0)}k lines/s on one core`, hits === 0 ? 'no false positives' : `${hits} false positives!`]);

  // End to end: a real bot flooding its log, the daemon tailing and scanning it.
  const rate = 10_000;
  const seconds = 5;
  const d = await startDaemon(
    { flood: { command: ['node', FLOOD], env: { FLOOD_RATE: String(rate), FLOOD_SECONDS: String(seconds), FLOOD_EVERY: '100' }, nonceErrors: { patterns: ['kraken'], rotateAfter: 1_000_000, windowMs: 60_000 }, stop: { graceMs: 2000 } } },
    [],
    { healthIntervalMs: 3_600_000 },
  );
  try {
    const c0 = cpuTicks(d.pid);
    const start = performance.now();
    await d.req('POST', '/bots/flood/start');
    const expected = (rate * seconds) / 100;
    let got = 0;
    let lastLine = 0;
    for (;;) {
      const b = (await d.req('GET', '/bots/flood')).body;
      got = b.nonceErrors.total;
      if (got >= expected) {
        lastLine = performance.now();
        break;
      }
      if (performance.now() - start > 30_000) break;
      await sleep(20);
    }
    const cpu = ((cpuTicks(d.pid) - c0) / 100 / ((lastLine - start) / 1000)) * 100;
    rows.push([
      `a bot printing ${rate} lines/s for ${seconds} s (1 % nonce errors)`,
      `${got}/${expected} nonce errors counted, all in ${((lastLine - start) / 1000).toFixed(2)} s from the start request (bot runtime ${seconds} s); daemon CPU ${cpu.toFixed(1)} % of a core meanwhile`,
      got >= expected && lastLine - start < (seconds + 2) * 1000 ? 'keeps up' : 'FELL BEHIND',
    ]);
    await d.req('POST', '/bots/flood/stop');
  } finally {
    await d.stop();
    d.cleanup();
  }
  return { rows };
}
