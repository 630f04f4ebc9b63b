import { writeFileSync } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { stringify } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { startDaemon, type Daemon } from '../src/daemon.js';
import { fixture, sweepLeftovers, TEST_TAG, tmpDir, waitFor } from './helper.js';
import { connectTo, killDaemons, spawnDaemon } from './proc-helper.js';

let d: Daemon | undefined;
afterEach(async () => {
  await d?.shutdown('stop-bots');
  d = undefined;
  killDaemons();
  expect(sweepLeftovers()).toEqual([]);
});

const acct = (extra: object = {}) => ({ command: fixture('bot.js'), startMs: 100, env: { BW_TEST_TAG: TEST_TAG }, ...extra });

async function req(d: Daemon, method: string, url: string) {
  const res = await fetch(d.url + url, { method, headers: { authorization: `Bearer ${d.token}` } });
  return { status: res.status, body: (await res.json()) as any };
}

describe('config reload', () => {
  it('POST /config/reload applies a valid file; an invalid one is 400 INVALID_CONFIG and changes nothing', async () => {
    const dir = tmpDir();
    const file = path.join(dir, 'botwarden.yaml');
    writeFileSync(file, stringify({ accounts: { a: acct({ brokerUsername: 'john' }) } }));
    d = await startDaemon({ flags: { config: file, dataDir: dir, listen: '127.0.0.1:0' }, env: { ...process.env, BOTWARDEN_TOKEN: undefined }, logger: pino({ level: 'silent' }) });
    await req(d, 'POST', '/bots/a/start');

    writeFileSync(file, stringify({ accounts: { a: acct({ brokerUsername: 'bob' }), b: { command: [], startMs: -1 } } }));
    const bad = await req(d, 'POST', '/config/reload');
    expect(bad.status).toBe(400);
    expect(bad.body.code).toBe('INVALID_CONFIG');
    expect(bad.body.problems).toEqual(expect.arrayContaining([expect.stringContaining('/accounts/b/command'), expect.stringContaining('/accounts/b/startMs')]));
    expect((await req(d, 'GET', '/bots')).body.bots.map((b: { account: string; brokerUsername: string }) => [b.account, b.brokerUsername])).toEqual([['a', 'john']]);

    writeFileSync(file, stringify({ accounts: { a: acct({ brokerUsername: 'bob' }), b: acct() } }));
    const ok = await req(d, 'POST', '/config/reload');
    expect(ok).toMatchObject({ status: 200, body: { status: 'reloaded', accounts: ['a', 'b'] } });
    const bots = (await req(d, 'GET', '/bots')).body.bots;
    expect(bots.map((b: { account: string; brokerUsername: string; state: string }) => [b.account, b.brokerUsername, b.state !== 'stopped'])).toEqual([
      ['a', 'bob', true], // the running bot keeps running
      ['b', '', false],
    ]);
    expect((await req(d, 'POST', '/bots/b/start')).status).toBe(201);
  });

  it('SIGHUP reloads the daemon process; an invalid file changes nothing and the daemon keeps serving', async () => {
    const dir = tmpDir();
    const file = path.join(dir, 'botwarden.yaml');
    writeFileSync(file, stringify({ accounts: { a: acct() } }));
    const p = spawnDaemon(dir, file);
    const c = await connectTo(dir, p.pid);
    writeFileSync(file, 'accounts: [broken\n');
    p.child.kill('SIGHUP');
    await new Promise((r) => setTimeout(r, 300));
    expect((await c.req('GET', '/bots')).body.bots.map((b: { account: string }) => b.account)).toEqual(['a']);
    writeFileSync(file, stringify({ accounts: { a: acct(), z: acct() } }));
    p.child.kill('SIGHUP');
    await waitFor(async () => (await c.req('GET', '/bots')).body.bots.length === 2, { what: 'reloaded' });
    p.child.kill('SIGTERM');
    expect((await p.exited).code).toBe(0);
  });
});
