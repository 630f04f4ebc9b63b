// SPEC 17's shared-key rule at every scan: the hunter's scan with 1,000 other processes on the
// machine, with and without a leased key whose value it looks for in their environments. The scan
// figures come from /health (check `duplicates`: mean and last scan). Run: node bench/keyscan.mjs
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDaemon } from './lib.mjs';

const N = Number(process.env.KEYSCAN_N ?? 1000);

export async function benchKeyScan() {
  const rows = [];
  process.env.KS_KEY = 'keyscan-public-key-0001';
  process.env.KS_SECRET = 'keyscan-secret-key-0001';
  const others = [];
  // Their environments hold no key: the scan reads each once and finds nothing (the common case).
  for (let i = 0; i < N; i++) others.push(spawn('sleep', ['600'], { detached: true, stdio: 'ignore', env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } }));
  try {
    for (const [label, withKey] of [['no key leased', false], ['a leased key looked for in every environment', true]]) {
      const acct = { command: ['sleep', '600'], startMs: 10, stop: { graceMs: 2000 }, ...(withKey ? { keys: { pool: ['k1'], envKey: 'EX_KEY', envSecret: 'EX_SECRET' } } : {}) };
      const d = await startDaemon({ ks: acct }, [], { scanIntervalMs: 1000 }, null, { keys: { k1: { keyEnv: 'KS_KEY', secretEnv: 'KS_SECRET' } } });
      try {
        await d.fast('POST', '/bots/ks/start');
        await sleep(12_000);
        const h = await d.fast('GET', '/health');
        const c = h.body.checks.find((x) => x.name === 'duplicates');
        rows.push([`hunter scan, ${N} other processes, ${label}`, c.detail]);
      } finally {
        await d.stop('SIGTERM');
        d.cleanup();
      }
    }
  } finally {
    for (const c of others) process.kill(-c.pid, 'SIGKILL');
  }
  return { rows };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { rows } = await benchKeyScan();
  for (const r of rows) console.log(`- ${r.join(' — ')}`);
}
