// The dashboard at 1,000 accounts in a real Chromium: time to the full table, and how fast 100
// starts made through the API show up in the page, with the page's main thread time.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import chromiumPkg from '@sparticuz/chromium';
import { chromium } from 'playwright-core';
import { startDaemon } from './lib.mjs';

export async function benchDashboard() {
  const rows = [];
  const N = 1000;
  const accounts = {};
  for (let i = 0; i < N; i++) accounts[`a${i}`] = { command: ['sleep', '3600'], startMs: 10, stop: { graceMs: 2000 } };
  const d = await startDaemon(accounts, [], { healthIntervalMs: 5000 });
  const exe = existsSync('/usr/bin/chromium') ? '/usr/bin/chromium' : await chromiumPkg.executablePath();
  const browser = await chromium.launch({ executablePath: exe, headless: true, args: [...chromiumPkg.args.filter((a) => !/^--(single-process|no-zygote|disable-web-security|allow-running-insecure-content)$/.test(a)), '--no-sandbox'] });
  try {
    const token = readFileSync(path.join(d.dir, 'api-token'), 'utf8').trim();
    const url = JSON.parse(readFileSync(path.join(d.dir, 'daemon.json'), 'utf8')).url;
    const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    const t0 = performance.now();
    await page.goto(`${url}/#token=${token}`);
    await page.waitForFunction((n) => document.querySelectorAll('#bots tbody tr').length === n, N, { timeout: 30_000 });
    rows.push([`dashboard with ${N} accounts: page load to the full table`, `${(performance.now() - t0).toFixed(0)} ms`]);
    await page.waitForSelector('#conn.ok');
    const m0 = await page.evaluate(() => performance.now());
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Performance.enable');
    const before = Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));
    const t1 = performance.now();
    for (let i = 0; i < 100; i++) await d.fast('POST', `/bots/a${i}/start`);
    await page.waitForFunction(() => document.querySelectorAll('#bots tr[data-state="running"]').length === 100, undefined, { timeout: 30_000 });
    const shown = performance.now() - t1;
    const after = Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));
    const m1 = await page.evaluate(() => performance.now());
    const script = (after.ScriptDuration - before.ScriptDuration) * 1000;
    const layout = (after.LayoutDuration - before.LayoutDuration + after.RecalcStyleDuration - before.RecalcStyleDuration) * 1000;
    rows.push([`100 API starts at ${N} accounts, all running in the page`, `${shown.toFixed(0)} ms after the first request`, `page main thread: script ${script.toFixed(0)} ms, style+layout ${layout.toFixed(0)} ms over ${(m1 - m0).toFixed(0)} ms`]);
  } finally {
    await browser.close();
    await d.stop('SIGTERM');
    d.cleanup();
  }
  return { rows };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { rows } = await benchDashboard();
  for (const r of rows) console.log(`- ${r.join(' — ')}`);
}
