/**
 * What a path does not need is not loaded (docs/benchmarks.md, "Memory by module"): prom-client on
 * the first scrape of /metrics, @fastify/swagger on the first GET /openapi.json. And the laziness
 * loses nothing: counters of what happened before the first scrape show it. And response
 * serializers and request validators are compiled on a route's first use, so the boot no longer
 * proves they compile: a test does.
 */
import AjvCompiler from '@fastify/ajv-compiler';
import SerializerSelector from '@fastify/fast-json-stringify-compiler';
import websocket from '@fastify/websocket';
import Fastify, { type FastifyInstance, type RouteOptions } from 'fastify';
import { Type } from '@sinclair/typebox';
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { BotwardenEvent } from '../src/events/types.js';
import { AJV_OPTIONS, createApp } from '../src/http/app.js';
import { apiRoutes, type ApiRoutesOptions } from '../src/http/routes/index.js';
import { Metrics, type MetricsDeps } from '../src/metrics/metrics.js';
import { fixture, killChildren, makeConfig, startTestDaemon, sweepLeftovers, TEST_TAG, waitFor, type TestDaemon } from './helper.js';

const daemons: TestDaemon[] = [];
const children: ChildProcess[] = [];
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.close();
  await killChildren(children);
  expect(sweepLeftovers()).toEqual([]);
});

type Family = { name: string; metrics: { value: string; labels?: Record<string, string> }[] };
const parse = (text: string) => new Map((parsePrometheusTextFormat(text) as Family[]).map((f) => [f.name, f]));
const value = (m: Map<string, Family>, name: string, labels: Record<string, string>) =>
  Number(m.get(name)?.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v))?.value ?? NaN);

/** Whether this process has loaded a package (CommonJS: prom-client and @fastify/swagger are). */
const loaded = (pkg: string) => Object.keys(createRequire(import.meta.url).cache).some((f) => f.includes(`${path.sep}node_modules${path.sep}${pkg}${path.sep}`));

describe('loaded on first use', () => {
  it('prom-client on the first scrape, @fastify/swagger on the first GET /openapi.json; a duplicate killed before the first scrape is counted', async () => {
    const match = `lazy-dup-${TEST_TAG}`;
    const d = await startTestDaemon(makeConfig({ accounts: { a: { command: fixture('bot.js'), startMs: 100, match } }, daemon: { scanIntervalMs: 100 } }));
    daemons.push(d);
    expect(loaded('prom-client')).toBe(false);
    expect(loaded('@fastify/swagger')).toBe(false);

    expect((await d.req('POST', '/bots/a/start')).status).toBe(201);
    const dup = spawn(process.execPath, [fixture('bot.js')[1]!, match], { env: { ...process.env, BW_TEST_TAG: TEST_TAG }, stdio: 'ignore' });
    children.push(dup);
    await waitFor(async () => (await d.req('GET', '/events/history?types=duplicate.killed')).body.events.length === 1, { what: 'duplicate killed', timeoutMs: 8000 });
    expect(loaded('prom-client')).toBe(false);

    const first = await d.req('GET', '/openapi.json');
    expect(first.status).toBe(200);
    expect(first.body.openapi).toBe('3.1.0');
    expect(Object.keys(first.body.paths)).toEqual(expect.arrayContaining(['/bots', '/bots/{account}/start', '/events/history', '/metrics', '/whoami']));
    expect(first.body.paths['/openapi.json']).toBeUndefined();
    expect(loaded('@fastify/swagger')).toBe(true);
    expect((await d.req('GET', '/openapi.json')).text).toBe(first.text);
    expect(loaded('prom-client')).toBe(false);

    const m = parse((await d.req('GET', '/metrics')).text);
    expect(loaded('prom-client')).toBe(true);
    expect(value(m, 'botwarden_duplicates_killed_total', { account: 'a' })).toBe(1);
    expect(value(m, 'botwarden_bot_up', { account: 'a' })).toBe(1);
    expect(value(m, 'botwarden_key_rotations_total', { account: 'a' })).toBe(0);
    expect(m.get('process_cpu_user_seconds_total')).toBeDefined();
  });
});

describe('Metrics before its first scrape', () => {
  it('counts every event and alert delivery from its start, and the first scrape shows them', async () => {
    const subscribers: ((e: BotwardenEvent) => void)[] = [];
    let id = 0;
    const emit = (type: string, fields: Record<string, unknown>) => {
      for (const s of subscribers) s({ id: ++id, type: type as BotwardenEvent['type'], at: new Date().toISOString(), ...fields });
    };
    const view = (account: string) => ({ account, state: 'running', pid: 100, startedAt: new Date().toISOString(), restarts: 2, rssBytes: 1024, nonceErrors: { inWindow: 0, total: 3 } });
    const metrics = new Metrics({
      supervisor: { list: () => [view('a'), view('b')], all: () => [] },
      keys: { list: async () => [{ id: 'k1', state: 'leased' }] },
      events: {
        subscribe: (l: (e: BotwardenEvent) => void) => {
          subscribers.push(l);
          return () => undefined;
        },
      },
      version: '9.9.9',
    } as unknown as MetricsDeps);

    emit('duplicate.killed', { account: 'a' });
    emit('duplicate.killed', { account: 'a' });
    emit('key.rotated', { account: 'b' });
    emit('bot.unresponsive', { account: 'b' });
    emit('bot.stopping', { account: 'c', reason: 'fence' });
    emit('bot.stopping', { account: 'c', reason: 'operator' });
    metrics.alertsSent.inc({ alert: 'ops', outcome: 'sent' });
    metrics.alertsSent.inc({ alert: 'ops', outcome: 'sent' });
    metrics.alertsSent.inc({ alert: 'ops', outcome: 'failed' });

    let m = parse(await metrics.text());
    expect(value(m, 'botwarden_duplicates_killed_total', { account: 'a' })).toBe(2);
    expect(value(m, 'botwarden_duplicates_killed_total', { account: 'b' })).toBe(0);
    expect(value(m, 'botwarden_key_rotations_total', { account: 'a' })).toBe(0);
    expect(value(m, 'botwarden_key_rotations_total', { account: 'b' })).toBe(1);
    expect(value(m, 'botwarden_bot_unresponsive_total', { account: 'b' })).toBe(1);
    expect(value(m, 'botwarden_fences_total', { account: 'c' })).toBe(1);
    expect(value(m, 'botwarden_alerts_sent_total', { alert: 'ops', outcome: 'sent' })).toBe(2);
    expect(value(m, 'botwarden_alerts_sent_total', { alert: 'ops', outcome: 'failed' })).toBe(1);
    expect(value(m, 'botwarden_bot_restarts_total', { account: 'a' })).toBe(2);
    expect(value(m, 'botwarden_key_state', { key: 'k1', state: 'leased' })).toBe(1);
    expect(value(m, 'botwarden_build_info', { version: '9.9.9' })).toBe(1);

    // After the first scrape the counters keep following.
    emit('duplicate.killed', { account: 'a' });
    metrics.alertsSent.inc({ alert: 'ops', outcome: 'dropped' });
    m = parse(await metrics.text());
    expect(value(m, 'botwarden_duplicates_killed_total', { account: 'a' })).toBe(3);
    expect(value(m, 'botwarden_alerts_sent_total', { alert: 'ops', outcome: 'dropped' })).toBe(1);
    expect(value(m, 'botwarden_alerts_sent_total', { alert: 'ops', outcome: 'sent' })).toBe(2);
  });
});

/** The daemon's server with every route registered (not listening), its routes and the schemas every context shares. */
async function everyRoute() {
    const app = createApp({ logger: pino({ level: 'silent' }) });
    const routes: RouteOptions[] = [];
    const instances: { getSchemas(): Record<string, unknown> }[] = [app];
    app.addHook('onRoute', (r) => void routes.push(r));
    app.addHook('onRegister', (i) => void instances.push(i));
    await app.register(websocket);
    await app.register(apiRoutes, {} as ApiRoutesOptions);
    await app.ready();
  return { app, routes, schemas: Object.assign({}, ...instances.map((i) => i.getSchemas())) as Record<string, unknown> };
}

describe('response serializers, compiled on first use', () => {
  it('every status of every route compiles with the schemas the server knows', async () => {
    const { app, routes, schemas } = await everyRoute();
    const compile = SerializerSelector()(schemas, {});
    let compiled = 0;
    for (const r of routes) {
      for (const [httpStatus, schema] of Object.entries((r.schema?.response ?? {}) as Record<string, unknown>)) {
        expect(() => compile({ schema, url: r.url, method: String(r.method), httpStatus }), `${String(r.method)} ${r.url} ${httpStatus}`).not.toThrow();
        compiled++;
      }
    }
    expect(compiled).toBeGreaterThan(50);
    await app.close();
  });
});

describe('request validators, compiled on first use', () => {
  it('every part (body, querystring, params, headers) of every route compiles with the options and schemas the server has', async () => {
    const { app, routes, schemas } = await everyRoute();
    const compile = AjvCompiler()(schemas as Record<string, AjvCompiler.RouteDefinition['schema']>, { customOptions: AJV_OPTIONS });
    let compiled = 0;
    for (const r of routes) {
      for (const part of ['body', 'querystring', 'params', 'headers'] as const) {
        const schema = r.schema?.[part] as AjvCompiler.RouteDefinition['schema'] | undefined;
        if (schema === undefined) continue;
        expect(() => compile({ schema, method: String(r.method), url: r.url, httpPart: part }), `${String(r.method)} ${r.url} ${part}`).not.toThrow();
        compiled++;
      }
    }
    expect(compiled).toBeGreaterThan(20);
    await app.close();
  });
});

describe('request validators compiled on first use hold requests to the same rules', () => {
  it('what a handler receives is what fastify with its own compiler gives it: coercion of the root value included', async () => {
    const body = Type.Union([Type.Object({ force: Type.Optional(Type.Boolean()) }, { additionalProperties: false }), Type.Null()]);
    const query = Type.Object({ n: Type.Optional(Type.Integer()) });
    const seen = async (app: FastifyInstance) => {
      app.post('/x', { schema: { body, querystring: query } }, (req: { body: unknown; query: unknown }) => ({ body: req.body ?? 'undefined', query: req.query }));
      await app.ready();
      const out: unknown[] = [];
      for (const [payload, url] of [['0', '/x'], ['false', '/x?n=3'], ['""', '/x'], ['{"force":"true"}', '/x?n=x'], ['{"extra":1}', '/x']] as const) {
        const res = await app.inject({ method: 'POST', url, payload, headers: { 'content-type': 'application/json' } });
        out.push([res.statusCode, res.json()]);
      }
      await app.close();
      return out;
    };
    const ours = await seen(createApp({ logger: pino({ level: 'silent' }) }) as unknown as FastifyInstance);
    const theirs = await seen(Fastify({ ajv: { customOptions: AJV_OPTIONS } }));
    expect(ours).toEqual(theirs);
    expect(ours[0]).toEqual([200, { body: 'undefined', query: {} }]);
  });
});
