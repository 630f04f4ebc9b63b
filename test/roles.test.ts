/**
 * SPEC 18 roles: every route of the OpenAPI document and both websockets, for each role, over real
 * HTTP: what the role may do answers as the route normally does (2xx, or its usual 4xx), the rest
 * is 403 FORBIDDEN naming the role it needs. The table below is the SPEC's, written out by hand.
 */
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { readEnviron } from '../src/host/procfs.js';
import { fixture, FIXTURES, makeConfig, startTestDaemon, sweepLeftovers, taggedProcesses, type TestDaemon } from './helper.js';

export const ROLE_TOKENS = {
  RL_VIEWER_TOKEN: 'viewer-token-0123456789abcdef',
  RL_OPERATOR_TOKEN: 'operator-token-0123456789abcdef',
  RL_ADMIN_TOKEN: 'admin-token-0123456789abcdef',
};
const TOKEN = { viewer: ROLE_TOKENS.RL_VIEWER_TOKEN, operator: ROLE_TOKENS.RL_OPERATOR_TOKEN, admin: ROLE_TOKENS.RL_ADMIN_TOKEN } as const;
type Role = keyof typeof TOKEN;
const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };

/** What each route needs (null: no token at all). A route the document adds must be added here. */
const NEEDS: Record<string, Role | null> = {
  'GET /health': null,
  'GET /bots': 'viewer',
  'GET /bots/{account}': 'viewer',
  'GET /bots/{account}/logs': 'operator',
  'POST /bots/{account}/start': 'operator',
  'POST /bots/{account}/stop': 'operator',
  'POST /bots/{account}/restart': 'operator',
  'GET /events/history': 'viewer',
  'GET /leases': 'viewer',
  'GET /whoami': 'viewer',
  'GET /keys': 'viewer',
  'POST /keys/{id}/enable': 'admin',
  'GET /clock': 'viewer',
  'GET /metrics': 'viewer',
  'GET /alerts': 'viewer',
  'POST /alerts/{name}/test': 'operator',
  'POST /config/reload': 'admin',
};
const SOCKETS: Record<string, Role> = { '/events': 'viewer', '/bots/rl1/logs/stream?lines=1': 'operator' };

let d: TestDaemon;
beforeAll(async () => {
  Object.assign(process.env, ROLE_TOKENS);
  const config = makeConfig({
    keys: { k1: { keyEnv: 'RL_KEY', secretEnv: 'RL_SECRET' } },
    alerts: { hook: { format: 'generic', url: 'http://127.0.0.1:9/hook', events: ['bot.fatal'] } },
    accounts: { rl1: { command: fixture('bot.js'), startMs: 100, stop: { graceMs: 2000 } } },
  });
  config.auth = parseConfig(
    { auth: { tokens: { phone: { role: 'viewer', tokenEnv: 'RL_VIEWER_TOKEN' }, ci: { role: 'operator', tokenEnv: 'RL_OPERATOR_TOKEN' }, boss: { role: 'admin', tokenEnv: 'RL_ADMIN_TOKEN' } } } },
    { baseDir: FIXTURES },
  ).auth;
  d = await startTestDaemon(config, { env: { ...process.env, RL_KEY: 'rl-key-value-1234', RL_SECRET: 'rl-secret-value-1234', BOTWARDEN_TOKEN: undefined } });
});
afterAll(async () => {
  await d?.close();
  expect(sweepLeftovers()).toEqual([]);
});

const fill = (route: string) => route.replace('{account}', 'rl1').replace('{id}', 'k1').replace('{name}', 'hook');

function socket(url: string, token: string): Promise<{ opened: boolean; status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(d.url.replace('http', 'ws') + url + (url.includes('?') ? '&' : '?') + `token=${encodeURIComponent(token)}`);
    ws.on('open', () => {
      ws.close();
      resolve({ opened: true, status: 101, body: '' });
    });
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ opened: false, status: res.statusCode ?? 0, body }));
    });
    ws.on('error', (err) => {
      if (!String(err.message).includes('Unexpected server response')) reject(err);
    });
  });
}

describe('roles', () => {
  it('the OpenAPI document lists exactly the routes this table classifies', async () => {
    const doc = (await d.req('GET', '/openapi.json')).body as { paths: Record<string, Record<string, unknown>> };
    const listed = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`));
    expect(listed.sort()).toEqual(Object.keys(NEEDS).sort());
  });

  it('every route, for each role: its normal answer when the role may, else 403 FORBIDDEN naming the role needed', async () => {
    const seen: string[] = [];
    for (const role of ['viewer', 'operator', 'admin'] as const) {
      for (const [route, need] of Object.entries(NEEDS)) {
        const [method, pattern] = route.split(' ') as [string, string];
        const res = await d.req(method, fill(pattern), { token: TOKEN[role] });
        const what = `${role} ${route} -> ${res.status} ${res.text.slice(0, 160)}`;
        seen.push(what);
        if (need === null || RANK[role] >= RANK[need]) {
          expect([401, 403], what).not.toContain(res.status);
          expect(res.status, what).toBeLessThan(500);
        } else {
          expect(res.status, what).toBe(403);
          expect(res.body, what).toMatchObject({ statusCode: 403, error: 'Forbidden', code: 'FORBIDDEN', role, needs: need });
          expect(res.body.message, what).toContain(`needs role ${need}`);
        }
      }
    }
    // The operator's start really started the bot, the admin's stop really stopped it: allowed means done.
    expect(seen.find((s) => s.startsWith('operator POST /bots/{account}/start'))).toMatch(/-> 201 /);
    expect(seen.find((s) => s.startsWith('admin POST /bots/{account}/restart'))).toMatch(/-> 200 /);
    expect(seen.find((s) => s.startsWith('admin POST /keys/{id}/enable'))).toMatch(/-> 200 /);
    expect(seen.find((s) => s.startsWith('operator POST /alerts/{name}/test'))).toMatch(/-> 202 /);
    // A viewer's start changed nothing.
    expect(seen.find((s) => s.startsWith('viewer POST /bots/{account}/start'))).toMatch(/-> 403/);
    await d.req('POST', '/bots/rl1/stop');
    expect(taggedProcesses('rl1')).toEqual([]);
  });

  it('the hidden /openapi.json is a viewer read; the generated api-token is admin', async () => {
    for (const role of ['viewer', 'operator', 'admin'] as const) expect((await d.req('GET', '/openapi.json', { token: TOKEN[role] })).status).toBe(200);
    expect((await d.req('GET', '/whoami')).body).toEqual({ name: 'api-token', role: 'admin' });
    expect((await d.req('GET', '/whoami', { token: TOKEN.viewer })).body).toEqual({ name: 'phone', role: 'viewer' });
    expect((await d.req('GET', '/whoami', { token: TOKEN.operator })).body).toEqual({ name: 'ci', role: 'operator' });
    expect((await d.req('POST', '/config/reload')).status).not.toBe(403);
  });

  it('/health: the whole snapshot with any role, the short one without a token', async () => {
    expect(Object.keys((await d.req('GET', '/health', { token: TOKEN.viewer })).body)).toContain('version');
    expect(Object.keys((await d.req('GET', '/health', { token: null })).body).sort()).toEqual(['checks', 'status']);
  });

  it('websockets follow the same rules: /events for a viewer, the logs stream from operator on; refused before the upgrade with 403', async () => {
    for (const role of ['viewer', 'operator', 'admin'] as const) {
      for (const [url, need] of Object.entries(SOCKETS)) {
        const r = await socket(url, TOKEN[role]);
        if (RANK[role] >= RANK[need]) expect(r, `${role} ${url}`).toMatchObject({ opened: true });
        else {
          expect(r, `${role} ${url}`).toMatchObject({ opened: false, status: 403 });
          expect(JSON.parse(r.body)).toMatchObject({ code: 'FORBIDDEN', needs: need });
        }
      }
    }
    expect(await socket('/events', 'not-a-token-at-all-000')).toMatchObject({ opened: false, status: 401 });
  });

  it("no bot inherits a variable that holds a role token, though the daemon's environment has it", async () => {
    const started = await d.req('POST', '/bots/rl1/start');
    expect(started.status).toBe(201);
    const env = readEnviron(started.body.pid as number);
    expect(env?.get('BW_TEST_TAG')).toBeDefined();
    for (const name of Object.keys(ROLE_TOKENS)) expect(env?.has(name), name).toBe(false);
    await d.req('POST', '/bots/rl1/stop');
  });

  it('role tokens are secrets: masked in what leaves the daemon (an error message naming one)', async () => {
    const cfg = d.supervisor.currentConfig();
    expect(cfg.auth?.tokens.map((t) => t.name).sort()).toEqual(['boss', 'ci', 'phone']);
    const res = await d.req('GET', `/bots/${TOKEN.viewer}`);
    expect(res.status).toBe(404);
    expect(res.text).not.toContain(TOKEN.viewer);
    expect(res.text).toContain('***');
  });
});
