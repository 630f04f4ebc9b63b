import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, makeConfig, startTestDaemon, sweepLeftovers, taggedProcesses, type TestDaemon } from './helper.js';

let d: TestDaemon;
beforeAll(async () => {
  d = await startTestDaemon(
    makeConfig({
      daemon: { allowedHosts: ['bots.internal'] },
      accounts: { acct: { command: fixture('bot.js'), brokerUsername: 'john', startMs: 100, stop: { graceMs: 2000 } } },
    }),
  );
});
afterAll(async () => {
  await d.close();
  expect(sweepLeftovers()).toEqual([]);
});

/** A raw request, to send a Host header fetch would not let us set. */
function raw(path: string, headers: Record<string, string>, method = 'GET'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const r = request({ host: '127.0.0.1', port: d.address.port, path, method, headers }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    r.on('error', reject);
    r.end();
  });
}

describe('auth and host guard', () => {
  it('401 without a token and with a wrong one, on every route but /health', async () => {
    for (const [m, u] of [['GET', '/bots'], ['GET', '/bots/acct'], ['POST', '/bots/acct/start'], ['GET', '/events/history'], ['GET', '/openapi.json'], ['POST', '/config/reload']] as const) {
      const none = await d.req(m, u, { token: null });
      expect(none.status, `${m} ${u}`).toBe(401);
      expect(none.body).toMatchObject({ statusCode: 401, error: 'Unauthorized', code: 'UNAUTHORIZED' });
      expect((await d.req(m, u, { token: 'x'.repeat(43) })).status).toBe(401);
    }
    expect(taggedProcesses()).toEqual([]); // the unauthorised start changed nothing
    expect((await d.req('GET', '/health', { token: null })).status).toBe(200);
  });

  it('421 for a foreign Host, fine for localhost, the listen address and allowedHosts', async () => {
    const auth = { authorization: `Bearer ${d.token}` };
    const foreign = await raw('/bots', { ...auth, host: 'evil.example:7070' });
    expect(foreign.status).toBe(421);
    expect(JSON.parse(foreign.body).code).toBe('MISDIRECTED_REQUEST');
    expect((await raw('/health', { host: 'evil.example' })).status).toBe(421);
    for (const host of [`localhost:${d.address.port}`, `127.0.0.1:${d.address.port}`, 'bots.internal:7070']) {
      expect((await raw('/bots', { ...auth, host })).status, host).toBe(200);
    }
  });

  it('/health without a token shows only the status and the checks (name, status): no version, uptime, counts, names or details', async () => {
    const anon = await d.req('GET', '/health', { token: null });
    expect(anon.body.status).toBe('ok');
    expect(Object.keys(anon.body).sort()).toEqual(['checks', 'status']);
    expect(anon.text).not.toContain('acct');
    expect(anon.body.checks.every((c: object) => Object.keys(c).sort().join() === 'name,status')).toBe(true);
    const full = await d.req('GET', '/health');
    expect(full.body.checks.find((c: { name: string }) => c.name === 'storage')).toMatchObject({ status: 'ok', detail: expect.any(String) });
  });
});

describe('health when storage is gone', () => {
  it('is 503 {status: failing} and names the storage check', async () => {
    const e = await startTestDaemon(makeConfig({ accounts: { x: { command: fixture('bot.js') } } }));
    e.db.close(); // storage unusable from here on
    const res = await e.req('GET', '/health');
    expect(res.status).toBe(503);
    expect(res.body.status).toBe('failing');
    expect(res.body.checks.find((c: { name: string }) => c.name === 'storage')).toMatchObject({ status: 'failing', detail: expect.stringContaining('not writable') });
    expect((await e.req('GET', '/health', { token: null })).body.status).toBe('failing');
    // Its own bookkeeping fails too (the stop is an error), but what it holds is let go of: the
    // port, and the data dir (a new daemon takes it at once).
    await expect(e.close()).rejects.toThrow();
    await expect(fetch(`${e.url}/health`)).rejects.toThrow();
    const next = await startTestDaemon(makeConfig({ accounts: { x: { command: fixture('bot.js') } } }), { dataDir: e.dataDir });
    await next.close();
  });
});

describe('bad input gets a clear 4xx and changes nothing', () => {
  it.each([
    ['..', '/bots/../start'],
    ['a space', '/bots/a%20b/start'],
    ['65 characters', `/bots/${'a'.repeat(65)}/start`],
    ['unicode', '/bots/k%C3%BCnstler/start'],
    ['a leading dash', '/bots/-acct/start'],
  ])('400 INVALID_ACCOUNT_ID for %s', async (_n, url) => {
    // Raw HTTP: fetch would normalise `..` away before it is sent.
    const res = await raw(url, { authorization: `Bearer ${d.token}`, host: 'localhost' }, 'POST');
    expect(res.status).toBe(400);
    const body = JSON.parse(res.body);
    expect(body.code).toBe('INVALID_ACCOUNT_ID');
    expect(body.message).toMatch(/Invalid account id/);
  });

  it('404 UNKNOWN_ACCOUNT for a well-formed id that is not configured', async () => {
    const res = await d.req('GET', '/bots/nope');
    expect(res.status).toBe(404);
    expect(res.body).toMatchObject({ code: 'UNKNOWN_ACCOUNT', error: 'Not Found' });
  });

  it('400 on malformed JSON and on a negative graceMs; 413 on a 200 KB body', async () => {
    const bad = await d.req('POST', '/bots/acct/stop', { body: '{"graceMs": ' });
    expect(bad.status).toBe(400);
    expect(bad.body.message).toMatch(/not valid JSON/);
    const neg = await d.req('POST', '/bots/acct/stop', { body: { graceMs: -1 } });
    expect(neg.status).toBe(400);
    expect(neg.body.code).toBe('INVALID_BODY');
    const big = await d.req('POST', '/bots/acct/start', { body: { pad: 'x'.repeat(200 * 1024) } });
    expect(big.status).toBe(413);
    expect(big.body.code).toBe('BODY_TOO_LARGE');
    expect(taggedProcesses()).toEqual([]);
  });

  it('400 on unknown query values', async () => {
    expect((await d.req('GET', '/bots/acct/logs?lines=abc')).status).toBe(400);
    expect((await d.req('GET', '/bots/acct/logs?lines=-5')).status).toBe(400);
    expect((await d.req('GET', '/events/history?since=x')).status).toBe(400);
    expect((await d.req('GET', '/events/history?types=%3Cscript%3E')).status).toBe(400);
  });

  it('an empty JSON body is no body', async () => {
    const res = await d.req('POST', '/bots/acct/stop', { body: '' });
    expect(res.status).toBe(200);
  });
});

describe('logs and OpenAPI', () => {
  it('GET /bots/:account/logs returns the last N lines as text', async () => {
    const acct = makeConfig({ accounts: { x: { command: fixture('bot.js'), env: { BOT_PRINT: 'one|two|three|four' } } } });
    const e = await startTestDaemon(acct);
    try {
      await e.req('POST', '/bots/x/start');
      const { waitFor } = await import('./helper.js');
      await waitFor(async () => (await e.req('GET', '/bots/x/logs?lines=2')).text.includes('four'));
      const res = await e.req('GET', '/bots/x/logs?lines=2');
      expect(res.text).toBe('three\nfour\n');
    } finally {
      await e.close();
    }
  });

  it('GET /openapi.json describes the routes from their schemas', async () => {
    const res = await d.req('GET', '/openapi.json');
    expect(res.status).toBe(200);
    expect(res.body.openapi).toMatch(/^3\./);
    expect(Object.keys(res.body.paths)).toEqual(expect.arrayContaining(['/bots', '/bots/{account}', '/bots/{account}/start', '/events/history', '/health']));
    expect(JSON.stringify(res.body)).toContain('ACCOUNT');
  });
});
