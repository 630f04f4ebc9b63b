// Observability costs: one /metrics scrape at 50 and at 1,000 accounts (latency and daemon CPU),
// and the time from an event to its webhook delivery with a healthy local target.
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { fmt, startDaemon, stats } from './lib.mjs';

const cpuMs = (pid) => {
  const s = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
};

export async function benchObserve() {
  const rows = [];
  for (const n of [50, 1000]) {
    const accounts = {};
    for (let i = 0; i < n; i++) accounts[`a${i}`] = { command: ['sleep', '3600'], startMs: 10 };
    const d = await startDaemon(accounts);
    try {
      for (let i = 0; i < Math.min(n, 50); i++) await d.fast('POST', `/bots/a${i}/start`);
      for (let i = 0; i < 5; i++) await d.req('GET', '/metrics'); // warm
      const lat = [];
      const c0 = cpuMs(d.pid);
      for (let i = 0; i < 50; i++) {
        const t = performance.now();
        const r = await d.req('GET', '/metrics');
        if (r.status !== 200) throw new Error(`metrics ${r.status}`);
        lat.push(performance.now() - t);
      }
      const s = stats(lat);
      rows.push([`/metrics scrape at ${n} accounts`, `p50 ${fmt(s.p50)}, p99 ${fmt(s.p99)}`, `daemon CPU ${((cpuMs(d.pid) - c0) / 50).toFixed(1)} ms per scrape`]);
    } finally {
      await d.stop('SIGTERM');
      d.cleanup();
    }
  }

  // Event -> webhook delivery.
  const lags = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const { event } = JSON.parse(body);
      if (event?.type === 'bot.starting') lags.push(Date.now() - Date.parse(event.at));
      res.end('ok');
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}/hook`;
  const d = await startDaemon({ a: { command: ['sleep', '3600'], startMs: 10, stop: { graceMs: 2000 } } }, [], {}, null, {
    alerts: { hook: { format: 'generic', url, events: ['bot.starting'], minIntervalMs: 0 } },
  });
  try {
    for (let i = 0; i < 100; i++) {
      await d.req('POST', '/bots/a/start');
      await d.req('POST', '/bots/a/stop');
    }
    const until = Date.now() + 5000;
    while (lags.length < 100 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    const s = stats(lags);
    rows.push(['event -> webhook delivery (generic, healthy local target)', `p50 ${s.p50} ms, p99 ${s.p99} ms over ${s.n} alerts`]);
  } finally {
    await d.stop('SIGTERM');
    d.cleanup();
    server.close();
  }
  return { rows };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { rows } = await benchObserve();
  for (const r of rows) console.log(`- ${r.join(' — ')}`);
}
