/**
 * SPEC 15: what a bot sees, and what leaves the daemon. A real daemon on a real YAML file and a
 * real .env file; its bots' environments read from /proc; every secret planted in a bot's output,
 * a failed spawn's command line and the config, then looked for on every way out: responses,
 * events (stored and streamed), alert bodies, the logs API and stream, the daemon's own log, and
 * the data dir's files.
 */
import { once } from 'node:events';
import { chmodSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { stringify } from 'yaml';
import { startDaemon, type Daemon } from '../src/daemon.js';
import { readEnviron } from '../src/host/procfs.js';
import { FIXTURES, sweepLeftovers, TEST_TAG, tmpDir, waitFor } from './helper.js';

const daemons: Daemon[] = [];
const servers: Server[] = [];
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.shutdown('stop-bots');
  for (const s of servers.splice(0)) s.close();
  expect(sweepLeftovers()).toEqual([]);
});

/** The real environment a daemon gets: this test's, without anything botwarden or key-like. */
function realEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => (!k.startsWith('BOTWARDEN_') || k === 'BOTWARDEN_SCOPE') && !k.startsWith('KRAKEN_') && !k.startsWith('SEC_')));
  return { ...env, ...extra };
}

async function daemonOn(dir: string, config: object, envFile: string, env: NodeJS.ProcessEnv, log?: string[]): Promise<Daemon & { req: (m: string, u: string, body?: unknown) => Promise<{ status: number; text: string; body: any }> }> {
  const file = path.join(dir, 'botwarden.yaml');
  writeFileSync(file, stringify(config));
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      log?.push(chunk.toString());
      cb();
    },
  });
  const d = await startDaemon({ flags: { config: file, dataDir: path.join(dir, 'data'), listen: '127.0.0.1:0', envFile }, env: { ...env, BOTWARDEN_LOG_LEVEL: 'trace' }, logDestination: sink });
  daemons.push(d);
  return Object.assign(d, {
    async req(method: string, url: string, body?: unknown) {
      const res = await fetch(d.url + url, {
        method,
        headers: { authorization: `Bearer ${d.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        // text/plain
      }
      return { status: res.status, text, body: parsed as any };
    },
  });
}

describe("a bot's environment (SPEC 15)", () => {
  it('is the real environment minus BOTWARDEN_* and key variables, plus only the .env variables its account names', async () => {
    const dir = tmpDir();
    const envFile = path.join(dir, '.env');
    writeFileSync(
      envFile,
      [
        'SEC_HOOK_URL=https://hooks.example/services/sec-hook-0001', // an alert target's: named by no account
        'SEC_IN_ENV=sec-in-env-0002',
        'SEC_IN_COMMAND=sec-in-command-0003',
        'SEC_PASSED=sec-passed-0004',
        'SEC_UNNAMED=sec-unnamed-0005',
        'BOTWARDEN_PG_URL=postgres://bw:sec-pg-pass-0006@db.example/bw',
        'KRAKEN_API_KEY=sec-kraken-key-0007',
        'KRAKEN_API_SECRET=sec-kraken-secret-0008',
      ].join('\n') + '\n',
      { mode: 0o600 },
    );
    const dotenvNames = readFileSync(envFile, 'utf8').trim().split('\n').map((l) => l.split('=')[0]!);
    const bot = path.join(FIXTURES, 'bot.js');
    const d = await daemonOn(
      dir,
      {
        daemon: { minFreeBytes: 1048576 },
        keys: { k1: { keyEnv: 'KRAKEN_API_KEY', secretEnv: 'KRAKEN_API_SECRET' } },
        alerts: { ops: { format: 'generic', url: '${SEC_HOOK_URL}', events: ['bot.fatal'] } },
        accounts: {
          'sec-named': {
            command: ['node', bot, '--tag', '${SEC_IN_COMMAND}'],
            env: { BW_TEST_TAG: TEST_TAG, ALIAS: '${SEC_IN_ENV}' },
            passEnv: ['SEC_PASSED'],
            keys: { pool: ['k1'], envKey: 'EX_KEY', envSecret: 'EX_SECRET' },
            stop: { graceMs: 2000 },
          },
          'sec-plain': { command: ['node', bot], env: { BW_TEST_TAG: TEST_TAG }, stop: { graceMs: 2000 } },
        },
      },
      envFile,
      realEnv({ BOTWARDEN_TOKEN: 'sec-token-0009-abcdef', BOTWARDEN_EXTRA: 'x', SEC_REAL_ONLY: 'from-the-shell' }),
    );
    const named = (await d.req('POST', '/bots/sec-named/start')).body;
    const plain = (await d.req('POST', '/bots/sec-plain/start')).body;
    const envNamed = readEnviron(named.pid)!;
    const envPlain = readEnviron(plain.pid)!;

    // The real environment (what the shell or systemd gave the daemon) reaches every bot...
    for (const e of [envNamed, envPlain]) {
      expect(e.get('PATH')).toBe(process.env.PATH);
      expect(e.get('SEC_REAL_ONLY')).toBe('from-the-shell');
      // ...minus every BOTWARDEN_* variable but those the daemon sets (the scope: every test file has one)...
      expect([...e.keys()].filter((k) => k.startsWith('BOTWARDEN_')).sort()).toEqual(['BOTWARDEN_ACCOUNT', 'BOTWARDEN_INSTANCE', 'BOTWARDEN_SCOPE']);
      // ...and every key variable.
      expect(e.has('KRAKEN_API_KEY') || e.has('KRAKEN_API_SECRET')).toBe(false);
    }
    // .env variables: only those the account names (${NAME} in env or command, passEnv).
    expect(dotenvNames.filter((n) => envNamed.has(n)).sort()).toEqual(['SEC_IN_COMMAND', 'SEC_IN_ENV', 'SEC_PASSED']);
    expect(envNamed.get('SEC_PASSED')).toBe('sec-passed-0004');
    expect(envNamed.get('ALIAS')).toBe('sec-in-env-0002');
    expect(dotenvNames.filter((n) => envPlain.has(n))).toEqual([]);
    // The leased pair, under the account's own names.
    expect([envNamed.get('EX_KEY'), envNamed.get('EX_SECRET')]).toEqual(['sec-kraken-key-0007', 'sec-kraken-secret-0008']);
    expect(envPlain.has('EX_KEY')).toBe(false);
  });

  it('passEnv may not name a key variable or a BOTWARDEN_* one (the config is invalid)', async () => {
    const { parseConfig, ConfigError } = await import('../src/config/load.js');
    const raw = { keys: { k1: { keyEnv: 'KK', secretEnv: 'KS' } }, accounts: { 'sec-x': { command: ['node'], passEnv: ['KK', 'BOTWARDEN_TOKEN'] } } };
    let err: unknown;
    try {
      parseConfig(raw, { baseDir: FIXTURES });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as InstanceType<typeof ConfigError>).problems.join('\n')).toMatch(/passEnv\/0: KK is a key variable[\s\S]*passEnv\/1: BOTWARDEN_\* variables/);
  });
});

describe('every secret is masked in everything that leaves the daemon (SPEC 15)', () => {
  it('key values, the API token, webhook URL and chat id, the database password, every .env value: not in responses, events, alerts, logs API and stream, the daemon log or the data dir', async () => {
    const dir = tmpDir();
    // The webhook receiver: every alert body it gets.
    const received: { url: string; body: string }[] = [];
    const hook = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        received.push({ url: req.url ?? '', body });
        res.end('{}');
      });
    });
    servers.push(hook);
    hook.listen(0, '127.0.0.1');
    await once(hook, 'listening');
    const port = (hook.address() as AddressInfo).port;

    const S = {
      key: 'seckey-AAAA-1111-alpha',
      secret: 'secsecret-BBBB-2222-bravo',
      token: 'sectoken-CCCC-3333-charlie',
      hookPath: 'sechookpath-DDDD-4444',
      tg: '123456:sectg-EEEE-5555',
      chat: '-100987654321',
      pgPass: 'secpass-FFFF-6666',
      other: 'secother-GGGG-7777-unreferenced',
      quoted: 'secq"uo\\te-HHHH-8888',
    };
    const envFile = path.join(dir, '.env');
    writeFileSync(
      envFile,
      [
        `KRAKEN_API_KEY=${S.key}`,
        `KRAKEN_API_SECRET=${S.secret}`,
        `SEC_HOOK_URL=http://127.0.0.1:${port}/hooks/${S.hookPath}`,
        `SEC_TG_TOKEN=${S.tg}`,
        `SEC_TG_CHAT=${S.chat}`,
        `SEC_PG_URL=postgres://bw:${S.pgPass}@127.0.0.1:1/bw`,
        `SEC_OTHER=${S.other}`,
        `SEC_QUOTED='${S.quoted}'`,
      ].join('\n') + '\n',
      { mode: 0o600 },
    );
    // A bot that prints every secret (the key pair it leased, the rest planted in its env), trips
    // a nonce error with the key in the line, then exits: bot.fatal, with its last lines alerted.
    const printer = `for (const l of process.env.BOT_PRINT.split('|')) console.log(l); console.log('EAPI:Invalid nonce key=' + process.env.EX_KEY + ' secret=' + process.env.EX_SECRET); setTimeout(() => process.exit(3), 300)`;
    const gone = path.join(dir, 'trader');
    writeFileSync(gone, '#!/bin/sh\n');
    chmodSync(gone, 0o755);
    const log: string[] = [];
    const d = await daemonOn(
      dir,
      {
        daemon: { minFreeBytes: 1048576 },
        // Not used for locks here (SQLite), but held: its password is a secret like any other.
        lock: { backend: 'sqlite', url: '${SEC_PG_URL}' },
        keys: { k1: { keyEnv: 'KRAKEN_API_KEY', secretEnv: 'KRAKEN_API_SECRET' } },
        alerts: {
          ops: { format: 'generic', url: '${SEC_HOOK_URL}', events: ['bot.fatal', 'nonce.error'], minIntervalMs: 0 },
          phone: { format: 'telegram', url: `http://127.0.0.1:${port}/bot\${SEC_TG_TOKEN}/sendMessage`, chatId: '${SEC_TG_CHAT}', events: ['bot.fatal'], minIntervalMs: 0 },
        },
        accounts: {
          'sec-print': {
            command: ['node', '-e', printer],
            env: {
              BW_TEST_TAG: TEST_TAG,
              BOT_PRINT: `hook=\${SEC_HOOK_URL}|tg=\${SEC_TG_TOKEN} chat=\${SEC_TG_CHAT}|pg=\${SEC_PG_URL}|token=${S.token}|other=${S.other}|quoted=\${SEC_QUOTED}`,
            },
            keys: { pool: ['k1'], envKey: 'EX_KEY', envSecret: 'EX_SECRET' },
            startMs: 5000,
            restart: { policy: 'never' },
            nonceErrors: { patterns: ['kraken'], rotateAfter: 100 },
          },
          // The case: a command line carrying the key, that cannot be spawned.
          'sec-spawn': { command: [gone, '--api-key', '${KRAKEN_API_KEY}', '--token', S.token], env: { BW_TEST_TAG: TEST_TAG }, restart: { policy: 'never' } },
        },
      },
      envFile,
      realEnv({ BOTWARDEN_TOKEN: S.token }),
      log,
    );
    rmSync(gone); // present at load (the config check), gone at the spawn
    const ws = (url: string) => {
      const sock = new WebSocket(`${d.url.replace('http', 'ws')}${url}`, { headers: { authorization: `Bearer ${d.token}` } });
      const got: string[] = [];
      sock.on('message', (m: Buffer) => got.push(m.toString()));
      return { sock, got, open: once(sock, 'open') };
    };
    const events = ws('/events?since=0');
    await events.open;
    const bodies: string[] = [];
    const grab = async (m: string, u: string, body?: unknown) => {
      const r = await d.req(m, u, body);
      bodies.push(r.text);
      return r;
    };
    const spawnFailed = await grab('POST', '/bots/sec-spawn/start');
    expect(spawnFailed.status).toBe(500);
    expect(spawnFailed.body.code).toBe('SPAWN_FAILED');
    expect(spawnFailed.body.message).toContain(gone); // the command is named, its secrets are not

    await grab('POST', '/bots/sec-print/start');
    const stream = ws('/bots/sec-print/logs/stream?lines=100');
    await stream.open;
    await waitFor(() => (d.supervisor.get('sec-print').state === 'fatal' ? true : null), { what: 'sec-print fatal', timeoutMs: 10_000 });
    await waitFor(() => received.length >= 5, { what: 'the alerts (2 bot.fatal, 1 nonce.error to ops; 2 bot.fatal to phone)', timeoutMs: 10_000 });
    for (const u of ['/bots', '/bots/sec-print', '/bots/sec-spawn', '/keys', '/health', '/alerts', '/events/history?since=0&limit=10000', '/openapi.json', '/bots/sec-print/logs?lines=100', '/metrics']) await grab('GET', u);
    await grab('POST', '/config/reload');
    const logsApi = (await d.req('GET', '/bots/sec-print/logs?lines=100')).text;
    await new Promise((r) => setTimeout(r, 200));
    const stored = d.events.history(0, 10_000);
    events.sock.close();
    stream.sock.close();
    await d.shutdown('stop-bots');

    // Every secret did get out of the daemon's hands (so this test can fail): the bot printed them...
    const botLog = readFileSync(path.join(dir, 'data', 'logs', 'sec-print.log'), 'utf8');
    for (const [name, s] of Object.entries(S)) expect(botLog, name).toContain(s);
    // ...and every surface carried what surrounded them, masked.
    expect(logsApi).toContain('other=***');
    expect(logsApi).toContain('EAPI:Invalid nonce key=*** secret=***');
    expect(stream.got.join('\n')).toContain('token=***');
    const fatal = stored.filter((e) => e.type === 'bot.fatal');
    expect(fatal.find((e) => e.account === 'sec-spawn')?.message).toMatch(/--api-key","\*\*\*","--token","\*\*\*"/);
    expect(received.some((r) => r.body.includes('other=***'))).toBe(true); // the last lines went out, masked
    // The Telegram target still gets its chat id in the body it is sent, and its token in its URL:
    // those go to the service, not to a person.
    const tg = received.filter((r) => r.url === `/bot${S.tg}/sendMessage`);
    expect(tg.length).toBe(2);
    for (const r of tg) expect(JSON.parse(r.body).chat_id).toBe(S.chat);
    expect(received.filter((r) => r.url === `/hooks/${S.hookPath}`).length).toBe(3);
    const files: string[] = [];
    const walk = (p: string) => {
      for (const f of readdirSync(p)) {
        const q = path.join(p, f);
        if (statSync(q).isDirectory()) walk(q);
        else if (!/\/logs\/[^/]+\.log(\.\d+)?$/.test(q)) files.push(readFileSync(q).toString('latin1'));
      }
    };
    walk(path.join(dir, 'data'));
    const haystacks: Record<string, string> = {
      responses: bodies.join('\n'),
      'events stream': events.got.join('\n'),
      'stored events': JSON.stringify(stored),
      'alert bodies': received.map((r) => r.body.replace(`"chat_id":"${S.chat}"`, '')).join('\n'),
      'logs stream': stream.got.join('\n'),
      'daemon log': log.join(''),
      'data dir': files.join('\n'),
    };
    expect(events.got.length).toBeGreaterThan(5);
    expect(log.join('').length).toBeGreaterThan(1000);
    const escaped = JSON.stringify(S.quoted).slice(1, -1);
    for (const [where, text] of Object.entries(haystacks)) {
      for (const [name, s] of Object.entries(S)) {
        expect(text.includes(s), `${name} in ${where}`).toBe(false);
        if (name === 'quoted') expect(text.includes(escaped), `${name} (JSON-escaped) in ${where}`).toBe(false);
      }
    }
  }, 30_000);
});
