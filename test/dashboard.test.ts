/**
 * The dashboard in a real Chromium (playwright-core driving @sparticuz/chromium's
 * binary, or /usr/bin/chromium where installed) against a real daemon process.
 */
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import chromiumPkg from '@sparticuz/chromium';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { fixture, ROOT, sweepLeftovers, tmpDir, waitFor } from './helper.js';
import { connectTo, killDaemons, spawnDaemon, writeConfig } from './proc-helper.js';

let browser: Browser;
beforeAll(async () => {
  const executablePath = existsSync('/usr/bin/chromium') ? '/usr/bin/chromium' : await chromiumPkg.executablePath();
  browser = await chromium.launch({
    executablePath,
    headless: true,
    // Its Lambda flags minus --single-process (one renderer for every page crashes with several) and
    // minus --disable-web-security / insecure content (the page must meet a real browser's rules).
    args: [...chromiumPkg.args.filter((a) => !/^--(single-process|no-zygote|disable-web-security|allow-running-insecure-content)$/.test(a)), '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}, 60_000);
afterAll(async () => {
  await browser?.close();
});
afterEach(() => {
  killDaemons();
  expect(sweepLeftovers()).toEqual([]);
});

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

function watch(page: Page) {
  const problems: string[] = [];
  page.on('console', (m) => {
    // The browser logs every refused request (the 401 of a wrong token, the 409 we provoke), and the
    // refused or reset connections of the daemon being SIGKILLed (a request in flight, or sent while
    // it is down): those are the test's own doing, not page errors; what the page shows is checked.
    if (m.type() === 'error' && !/status of (401|409)|ERR_CONNECTION_REFUSED|ERR_CONNECTION_RESET|WebSocket connection/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.hostname !== '127.0.0.1' && u.protocol !== 'data:') problems.push(`request left the machine: ${r.url()}`);
  });
  return problems;
}


describe('dashboard', () => {
  it('logs in, starts and stops by clicking, shows refusals, live events and output, and catches up after a daemon restart', async () => {
    const dir = tmpDir();
    const port = await freePort();
    const listen = ['--listen', `127.0.0.1:${port}`];
    process.env.DASH_KEY = 'dash-key-value';
    process.env.DASH_SECRET = 'dash-secret-value';
    const pool = { keys: { pool: ['k1'], envKey: 'KRAKEN_API_KEY', envSecret: 'KRAKEN_API_SECRET' } };
    const cfg = writeConfig(dir, {
      daemon: { healthIntervalMs: 500 },
      keys: { k1: { keyEnv: 'DASH_KEY', secretEnv: 'DASH_SECRET' } },
      accounts: {
        alpha: { name: 'Alpha main', broker: 'kraken', brokerUsername: 'john', command: fixture('bot.js'), startMs: 200, env: { BOT_TICK_MS: '200' }, ...pool },
        beta: { command: fixture('bot.js'), startMs: 200, ...pool },
        noisy: { command: fixture('nonce-bot.js'), startMs: 200, nonceErrors: { patterns: ['kraken'], rotateAfter: 100 }, env: { NONCE_ERRORS: '2' } },
      },
    });
    let d = spawnDaemon(dir, cfg, [...listen]);
    const api = await connectTo(dir, d.pid);
    const base = `http://127.0.0.1:${port}`;
    const token = (await import('node:fs')).readFileSync(path.join(dir, 'api-token'), 'utf8').trim();

    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const problems = watch(page);

    // A wrong token by the form is told so; the right one logs in.
    await page.goto(base + '/');
    await page.fill('#token', 'wrong-token');
    await page.click('#login-form button');
    await page.waitForSelector('#login-error:not([hidden])');
    expect(await page.textContent('#login-error')).toMatch(/Wrong token/);
    await page.fill('#token', token);
    await page.click('#login-form button');
    await page.waitForSelector('[data-account="alpha"][data-state="stopped"]');
    const csp = (await page.request.get(base + '/')).headers()['content-security-policy'];
    expect(csp).toContain("default-src 'none'");

    // By the fragment, in a fresh tab.
    const page2 = await browser.newPage();
    const problems2 = watch(page2);
    await page2.goto(`${base}/#token=${encodeURIComponent(token)}`);
    await page2.waitForSelector('[data-account="beta"]');
    expect(page2.url()).not.toContain('token');
    await page2.close();

    // Start by clicking.
    await page.click('[data-account="alpha"] button:text-is("Start")');
    await page.waitForSelector('[data-account="alpha"][data-state="running"]', { timeout: 5000 });
    expect(await page.textContent('[data-account="alpha"]')).toContain('k1');

    // A refused Start shows the daemon's 409 message.
    await page.click('[data-account="beta"] button:text-is("Start")');
    await page.waitForSelector('#alert:not([hidden])');
    expect(await page.textContent('[role="alert"]#alert')).toMatch(/No free API key for account 'beta'/);

    // A start through the API shows at once (pushed: within a second; 3 s on a loaded machine, where
    // a page that waited for its next poll or a reload would not); its nonce errors appear live.
    const t0 = Date.now();
    expect((await api.req('POST', '/bots/noisy/start')).status).toBe(201);
    await page.waitForSelector('[data-account="noisy"][data-state="starting"], [data-account="noisy"][data-state="running"]', { timeout: 3000 });
    expect(Date.now() - t0).toBeLessThan(3000);
    await page.waitForSelector('#events li[data-type="nonce.error"]', { timeout: 2000 });
    expect(await page.textContent('#events')).toContain('EAPI:Invalid nonce');

    // Logs follows new output.
    await page.click('[data-account="alpha"] button:text-is("Logs")');
    await waitFor(async () => ((await page.textContent('#logs')) ?? '').includes('ready pid='), { what: 'the log tail' });
    const ticks = async () => ((await page.textContent('#logs')) ?? '').split('tick').length;
    const before = await ticks();
    await waitFor(async () => (await ticks()) > before + 1, { what: 'new output in the page', timeoutMs: 3000 });

    // The README's pictures: refreshed with UPDATE_SCREENSHOTS=1, otherwise taken into a temp dir.
    const shots = process.env.UPDATE_SCREENSHOTS ? path.join(ROOT, 'docs') : tmpDir('botwarden-shots-');
    await page.screenshot({ path: path.join(shots, 'dashboard-desktop.png') });
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true });
    await phone.goto(`${base}/#token=${encodeURIComponent(token)}`);
    await phone.waitForSelector('[data-account="alpha"][data-state="running"]');
    await phone.screenshot({ path: path.join(shots, 'dashboard-phone.png'), fullPage: false });
    await phone.close();

    // Stop by clicking.
    await page.click('[data-account="noisy"] button:text-is("Stop")');
    await page.waitForSelector('[data-account="noisy"][data-state="stopped"]', { timeout: 5000 });

    // SIGKILL the daemon, start a new one on the same port: the page reconnects and catches up.
    d.child.kill('SIGKILL');
    await d.exited;
    await page.waitForSelector('#conn:text("reconnecting")', { timeout: 3000 });
    d = spawnDaemon(dir, cfg, [...listen]);
    const api2 = await connectTo(dir, d.pid);
    await page.waitForSelector('#conn:text("live")', { timeout: 10_000 });
    expect((await api2.req('POST', '/bots/alpha/stop')).status).toBe(200);
    await page.waitForSelector('[data-account="alpha"][data-state="stopped"]', { timeout: 2000 });
    const ids = await page.$$eval('#events li', (lis) => lis.map((li) => li.textContent));
    expect(new Set(ids).size).toBe(ids.length); // nothing shown twice

    expect([...problems, ...problems2]).toEqual([]);
    await page.close();
  });

  it("a viewer's dashboard (SPEC 18): no Start, Stop, Restart or Logs, its rows still live, and who did what on the events", async () => {
    const dir = tmpDir();
    const port = await freePort();
    const viewerToken = 'rl-dash-viewer-token-0123456789';
    const raw = {
      auth: { tokens: { phone: { role: 'viewer', tokenEnv: 'RL_DASH_VIEWER' } } },
      accounts: { rld1: { name: 'RL one', command: fixture('bot.js'), startMs: 200, stop: { graceMs: 2000 } }, rld2: { command: fixture('bot.js'), startMs: 200 } },
    };
    const cfg = writeConfig(dir, raw); // the auth section is written as given
    const d = spawnDaemon(dir, cfg, ['--listen', `127.0.0.1:${port}`], { RL_DASH_VIEWER: viewerToken });
    const api = await connectTo(dir, d.pid);
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const problems = watch(page);
    await page.goto(`http://127.0.0.1:${port}/#token=${encodeURIComponent(viewerToken)}`);
    await page.waitForSelector('[data-account="rld1"][data-state="stopped"]');
    expect(await page.textContent('#who')).toBe('phone · viewer');
    for (const label of ['Start', 'Stop', 'Restart', 'Logs']) expect(await page.locator(`#bots button:text-is("${label}")`).count(), label).toBe(0);

    // Started by someone else: the viewer's row follows live, and the feed says who did it.
    expect((await api.req('POST', '/bots/rld1/start')).status).toBe(201);
    await page.waitForSelector('[data-account="rld1"][data-state="running"]', { timeout: 3000 });
    await page.waitForSelector('#events li[data-type="audit"] .actor[data-actor="api-token"]', { timeout: 2000 });
    expect(await page.textContent('#events li[data-type="audit"]')).toMatch(/POST \/bots\/:account\/start 201 from 127\.0\.0\.1 by api-token \(admin\)/);
    expect((await api.req('POST', '/bots/rld1/stop')).status).toBe(200);
    await page.waitForSelector('[data-account="rld1"][data-state="stopped"]', { timeout: 3000 });
    expect(problems).toEqual([]);
    await page.close();
  });
});
