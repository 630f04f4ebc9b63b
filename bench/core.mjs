// Start latency, stop overhead and racing starts: botwarden against a raw child_process.spawn of the same bot.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BOT, fmt, now, startDaemon, stats, tmp, waitFile } from './lib.mjs';

const N = Number(process.env.BENCH_N ?? 20);

async function rawStart(dir, i) {
  const mark = path.join(dir, `raw-${i}`);
  const fd = openSync(path.join(dir, 'raw.log'), 'a');
  const t0 = now();
  const child = spawn(process.execPath, [BOT], { detached: true, stdio: ['ignore', fd, fd], env: { ...process.env, BOT_MARK_FILE: mark, BOT_EXIT_DELAY_MS: '100' } });
  closeSync(fd);
  const first = await waitFile(mark);
  return { child, firstMs: first - t0 };
}

async function rawStop(child) {
  await sleep(60); // let it install its SIGTERM handler, as in the botwarden case
  const exited = new Promise((r) => child.once('exit', r));
  const t0 = now();
  process.kill(-child.pid, 'SIGTERM');
  await exited;
  return now() - t0;
}

export async function benchCore() {
  const dir = tmp();
  const accounts = {};
  for (let i = 0; i < N; i++) {
    accounts[`b${i}`] = { command: ['node', BOT], startMs: 50, env: { BOT_MARK_FILE: path.join(dir, `bw-${i}`), BOT_EXIT_DELAY_MS: '100' }, stop: { graceMs: 5000 } };
  }
  // The race measures lock contention, so its bot is `sleep`: a Node bot's ~90 ms boot would take one
  // of the machine's two cores away from the daemon and the client in the middle of the burst.
  accounts.race = { command: ['sleep', '3600'], startMs: 50, stop: { graceMs: 5000 } };
  accounts.racenode = { command: ['node', BOT], startMs: 50, stop: { graceMs: 5000 } };
  const d = await startDaemon(accounts);
  const raw = { first: [], stop: [] };
  const bw = { first: [], rest: [], stop: [] };
  try {
    // Warm-up, both paths.
    {
      const r = await rawStart(dir, 'w');
      await rawStop(r.child);
    }
    for (let i = 0; i < N; i++) {
      const r = await rawStart(dir, i);
      raw.first.push(r.firstMs);
      raw.stop.push(await rawStop(r.child));

      const t0 = now();
      const res = await d.req('POST', `/bots/b${i}/start`);
      const tRest = now();
      if (res.status !== 201) throw new Error(`start b${i}: ${res.status} ${JSON.stringify(res.body)}`);
      const first = await waitFile(path.join(dir, `bw-${i}`));
      bw.first.push(first - t0);
      bw.rest.push(tRest - t0);
      await sleep(60);
      const s0 = now();
      const st = await d.req('POST', `/bots/b${i}/stop`);
      bw.stop.push(now() - s0);
      if (st.body.state !== 'stopped') throw new Error('not stopped');
    }

    // 200 racing starts of one account, 5 rounds.
    // Open the 200 client connections first (as 200 waiting clients would have them).
    await Promise.all(Array.from({ length: 200 }, () => d.fast('GET', '/bots/race')));
    const cpuMs = () => {
      const f = readFileSync(`/proc/${d.pid}/stat`, 'latin1').split(') ')[1].split(' ');
      return (Number(f[11]) + Number(f[12])) * 10;
    };
    // One burst: 200 starts of one account at once (one wins, 199 get 409), then a stop.
    const burst = async (account) => {
      let wins = 0;
      const lat = await Promise.all(
        Array.from({ length: 200 }, async () => {
          const t0 = now();
          const r = await d.fast('POST', `/bots/${account}/start`);
          if (r.status === 201) wins++;
          else if (r.body.code !== 'ACCOUNT_LOCKED') throw new Error(`unexpected ${r.status}`);
          return now() - t0;
        }),
      );
      await d.fast('POST', `/bots/${account}/stop`);
      if (wins !== 1) throw new Error(`${wins} winners in one burst`);
      return lat;
    };
    const racing = async (account) => {
      // The first burst runs on a cold JIT (as a race in a daemon that has been idle would);
      // 10 more warm it up; the figure is the 5 bursts after that.
      const cold = stats(await burst(account));
      for (let i = 0; i < 10; i++) await burst(account);
      const cpu0 = cpuMs();
      const race = [];
      for (let round = 0; round < 5; round++) race.push(...(await burst(account)));
      // Daemon CPU per request (the winner's spawn and each burst's stop included).
      const perReq = ((cpuMs() - cpu0) / (5 * 200)) * 1000;
      return { rc: stats(race), cold, perReq };
    };
    const r1 = await racing('race');
    const r2 = await racing('racenode');

    const rf = stats(raw.first);
    const bf = stats(bw.first);
    const rs = stats(raw.stop);
    const bs = stats(bw.stop);
    const br = stats(bw.rest);
    return {
      rows: [
        ['start -> first bot instruction', `raw spawn p50 ${fmt(rf.p50)} | botwarden p50 ${fmt(bf.p50)} p95 ${fmt(bf.p95)}`, `ratio ${(bf.p50 / rf.p50).toFixed(3)}x (goal <= 1.05x)`],
        ['REST start call answers in', `p50 ${fmt(br.p50)} p95 ${fmt(br.p95)} max ${fmt(br.max)}`, 'goal < 10 ms'],
        ['stop of a bot exiting 100 ms after SIGTERM', `raw p50 ${fmt(rs.p50)} | botwarden p50 ${fmt(bs.p50)} p95 ${fmt(bs.p95)}`, `overhead ${fmt(bs.p50 - rs.p50)} (goal <= 5 ms), ratio ${(bs.p50 / rs.p50).toFixed(3)}x`],
        ['200 racing starts x 5 bursts (one keep-alive client process), bot `sleep`', `warm: p50 ${fmt(r1.rc.p50)} p99 ${fmt(r1.rc.p99)} max ${fmt(r1.rc.max)}; cold first burst p99 ${fmt(r1.cold.p99)}; exactly one winner in each of 16 bursts; daemon CPU ${r1.perReq.toFixed(0)} us/request (10 ms tick resolution)`, 'goal p99 <= 50 ms'],
        ['200 racing starts x 5 bursts, Node bot (its boot takes a core mid-burst)', `warm: p50 ${fmt(r2.rc.p50)} p99 ${fmt(r2.rc.p99)}; cold first burst p99 ${fmt(r2.cold.p99)}`, ''],
      ],
    };
  } finally {
    await d.stop();
    d.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
}
