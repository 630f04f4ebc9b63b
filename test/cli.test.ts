import { execFile, spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { fixture, makeConfig, startTestDaemon, sweepLeftovers, tmpDir, waitFor, type TestDaemon } from './helper.js';
import { CLI, connectTo, killDaemons, spawnDaemon, writeConfig } from './proc-helper.js';

const daemons: TestDaemon[] = [];
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.close();
  killDaemons();
  expect(sweepLeftovers()).toEqual([]);
});
beforeAll(() => expect(existsSync(CLI)).toBe(true));

const cleanEnv = () => ({ ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BOTWARDEN_') || k === 'BOTWARDEN_SCOPE')), NO_COLOR: '1' });

function run(args: string[], env: NodeJS.ProcessEnv = cleanEnv()): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env, timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

async function daemon() {
  const d = await startTestDaemon(
    makeConfig({
      accounts: {
        'kraken-main': { name: 'Kraken main', brokerUsername: 'john', command: fixture('bot.js'), startMs: 100, stop: { graceMs: 2000 } },
        other: { command: fixture('bot.js'), startMs: 100 },
      },
    }),
  );
  daemons.push(d);
  return d;
}

describe('botwarden CLI against a real daemon', () => {
  it('start, status, stop, restart: tables for people, --json for scripts, exit 0', async () => {
    const d = await daemon();
    const g = ['--data-dir', d.dataDir];
    const started = await run([...g, 'start', 'kraken-main']);
    expect(started).toMatchObject({ code: 0, stderr: '' });
    expect(started.stdout).toMatch(/^kraken-main: starting \(pid \d+\)\n$/);

    const table = await run([...g, 'status']);
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ACCOUNT\s+STATE\s+PID\s+UPTIME\s+RESTARTS\s+KEY\s+NONCE\s+LAST EXIT\s+NAME$/);
    expect(lines[1]).toMatch(/^kraken-main\s+(starting|running)\s+\d+\s+\d+s\s+0\s+-\s+0\/0\s+-\s+Kraken main$/);
    expect(lines[2]).toMatch(/^other\s+stopped\s+-/);
    // Columns are aligned: STATE starts at the same offset on every line.
    expect(new Set(lines.map((l) => l.search(/(STATE|starting|running|stopped)/))).size).toBe(1);

    const js = await run([...g, '--json', 'status', 'kraken-main']);
    expect(JSON.parse(js.stdout)).toMatchObject({ account: 'kraken-main', lock: { pid: expect.any(Number) } });
    const all = JSON.parse((await run([...g, 'status', '--json'])).stdout);
    expect(all.bots.map((b: { account: string }) => b.account)).toEqual(['kraken-main', 'other']);

    const one = await run([...g, 'status', 'kraken-main']);
    expect(one.stdout).toMatch(/^account\s+kraken-main$/m);
    expect(one.stdout).toMatch(/^broker\s+- \(john\)$/m);

    const restarted = await run([...g, 'restart', 'kraken-main', '--grace', '1000']);
    expect(restarted.code).toBe(0);
    const stopped = await run([...g, 'stop', 'kraken-main']);
    expect(stopped).toMatchObject({ code: 0 });
    expect(stopped.stdout).toMatch(/^kraken-main: stopped \(last exit: /);
  });

  it('a refused start prints the SPEC 409 text on stderr and exits 1', async () => {
    const d = await daemon();
    const first = (await d.req('POST', '/bots/kraken-main/start')).body;
    const r = await run(['--data-dir', d.dataDir, 'start', 'kraken-main']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`Account 'Kraken main' is already being traded! Broker: john. Started: ${first.startedAt} (pid ${first.pid}).`);
    expect(r.stderr).toContain('stop the other instance first');
    const unknown = await run(['--data-dir', d.dataDir, 'stop', 'nope']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("Unknown account 'nope'");
    const json = await run(['--data-dir', d.dataDir, '--json', 'start', 'kraken-main']);
    expect(JSON.parse(json.stdout)).toMatchObject({ statusCode: 409, code: 'ACCOUNT_LOCKED' });
  });

  it('usage errors exit 2; an unreachable daemon exits 3 saying where it looked; --help works everywhere', async () => {
    expect((await run(['frobnicate'])).code).toBe(2);
    expect((await run(['start'])).code).toBe(2);
    expect((await run(['stop', 'a', '--grace', '-5'])).code).toBe(2);
    expect((await run(['logs', 'a', '-n', 'lots'])).code).toBe(2);
    // A port nobody listens on.
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const r = await run(['--listen', `127.0.0.1:${port}`, 'status']);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`cannot reach the botwarden daemon at http://127.0.0.1:${port} (address from --listen)`);
    const viaEnv = await run(['status'], { ...cleanEnv(), BOTWARDEN_LISTEN: `127.0.0.1:${port}` });
    expect(viaEnv.stderr).toContain('(address from BOTWARDEN_LISTEN)');
    for (const c of ['start', 'stop', 'restart', 'status', 'logs', 'events', 'health', 'keys', 'leases', 'dashboard', 'daemon']) {
      const h = await run([c, '--help']);
      expect(h.code, c).toBe(0);
      expect(h.stdout, c).toMatch(/^Usage: botwarden /);
    }
  });

  it('health and keys print tables; health exit code follows the status', async () => {
    const d = await daemon();
    const h = await run(['--data-dir', d.dataDir, 'health']);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/^status ok {2}version/);
    expect(h.stdout).toMatch(/^storage\s+ok\s+SQLite writable$/m);
    const k = await run(['--data-dir', d.dataDir, 'keys']);
    expect(k).toMatchObject({ code: 0, stdout: 'KEY  STATE  ACCOUNT  COOLS FOR  NONCE ERRORS\n' });
    const kj = JSON.parse((await run(['--data-dir', d.dataDir, '--json', 'keys'])).stdout);
    expect(kj).toEqual({ keys: [] });
  });

  it('leases says there are none in SQLite mode; dashboard prints the URL with the token in its fragment', async () => {
    const d = await daemon();
    const l = await run(['--data-dir', d.dataDir, 'leases']);
    expect(l).toMatchObject({ code: 0, stdout: expect.stringContaining('no leases') });
    expect(JSON.parse((await run(['--data-dir', d.dataDir, '--json', 'leases'])).stdout)).toEqual({ leases: [] });
    const u = await run(['--data-dir', d.dataDir, 'dashboard']);
    expect(u.code).toBe(0);
    expect(u.stdout.trim()).toBe(`${d.url}/#token=${encodeURIComponent(d.token)}`);
  });

  it('logs prints the last lines; logs -f sees a new line within a second', async () => {
    const d = await daemon();
    await d.req('POST', '/bots/kraken-main/start');
    await waitFor(async () => (await d.req('GET', '/bots/kraken-main/logs?lines=5')).text.includes('ready'));
    const r = await run(['--data-dir', d.dataDir, 'logs', 'kraken-main', '-n', '1']);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n').filter(Boolean)).toHaveLength(1);

    const f = spawn(process.execPath, [CLI, '--data-dir', d.dataDir, 'logs', 'kraken-main', '-f', '-n', '1'], { env: cleanEnv() });
    let out = '';
    f.stdout.on('data', (c: Buffer) => (out += c.toString()));
    await waitFor(() => out.length > 0, { what: 'follower connected (its first line)' });
    const t0 = Date.now();
    await d.req('POST', '/bots/kraken-main/stop'); // the bot prints "SIGTERM received"
    await waitFor(() => out.includes('SIGTERM received'), { timeoutMs: 5000, what: 'followed line' });
    // Pushed as it is written (tens of ms); generous for a loaded machine, and still short of the
    // tailer's 30 s safety poll, or of a follower that reconnects to see new lines.
    expect(Date.now() - t0).toBeLessThan(3000);
    f.kill('SIGINT');
    expect(await new Promise((res) => f.once('exit', res))).toBe(0);
  });

  it('events follows live, and resumes after the daemon restarts without missing or repeating an event', async () => {
    const dir = tmpDir();
    const cfg = writeConfig(dir, { accounts: { a: { command: fixture('bot.js'), startMs: 100, stop: { graceMs: 2000 } } } });
    const d1 = spawnDaemon(dir, cfg);
    const c1 = await connectTo(dir, d1.pid);
    const f = spawn(process.execPath, [CLI, '--data-dir', dir, '--json', 'events', '--types', 'bot.,daemon.', '--since', '0'], { env: cleanEnv() });
    let out = '';
    let err = '';
    f.stdout.on('data', (c: Buffer) => (out += c.toString()));
    f.stderr.on('data', (c: Buffer) => (err += c.toString()));
    await waitFor(() => out.includes('"daemon.started"'), { what: 'follower connected (replayed daemon.started)' }).catch((e: Error) => {
      throw new Error(`${e.message}; cli stdout: ${out.slice(0, 500)}; stderr: ${err.slice(0, 500)}`);
    });
    const t0 = Date.now();
    await c1.req('POST', '/bots/a/start');
    await waitFor(() => out.includes('"bot.starting"'), { timeoutMs: 5000, what: 'live event' });
    // Pushed at once; generous for a loaded machine, short of a follower that polls or reconnects.
    expect(Date.now() - t0).toBeLessThan(3000);

    // The daemon goes away (leaving the bot running) and comes back.
    d1.child.kill('SIGKILL');
    await d1.exited;
    const d2 = spawnDaemon(dir, cfg);
    await connectTo(dir, d2.pid);
    await waitFor(() => out.includes('"bot.adopted"'), { timeoutMs: 10_000, what: 'event after reconnect' });
    expect(err).toContain('reconnecting');
    const ids = out.trim().split('\n').map((l) => (JSON.parse(l) as { id: number }).id);
    expect(new Set(ids).size).toBe(ids.length);
    for (let i = 1; i < ids.length; i++) expect(ids[i]).toBeGreaterThan(ids[i - 1]!);
    f.kill('SIGINT');
    await new Promise((res) => f.once('exit', res));
    const c2 = await connectTo(dir, d2.pid);
    await c2.req('POST', '/bots/a/stop');
    writeFileSync(path.join(dir, 'done'), '');
  });
});
