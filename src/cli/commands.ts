/**
 * The client commands (docs/api.md, CLI). Each prints for people (tables) or,
 * with --json, the API's JSON for scripts; errors are thrown and mapped to
 * exit codes by cli.ts.
 */
import type WebSocket from 'ws';
import type { Static } from '@sinclair/typebox';
import type { Bot, Lease } from '../http/schemas.js';

/** A bot as the API sends it (the route's own schema). */
type BotView = Static<typeof Bot>;
import { Client, RefusedError, UnreachableError } from './client.js';
import { human, paint, since, table, useColor } from './format.js';

export interface Out {
  json: boolean;
  write(s: string): void;
}

export const stdout: Out = { json: false, write: (s) => void process.stdout.write(s) };

const json = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;

function exitText(b: BotView): string {
  const e = b.lastExit;
  if (!e) return '-';
  const what = e.signal ? e.signal : e.code === null ? 'unknown' : `code ${e.code}`;
  // The cause first: "stopped (request)", "killed-outside SIGKILL", "oom", "exit code 1".
  const cause = e.cause === 'stopped' ? `stopped${e.reason ? ` (${e.reason})` : ''}` : e.cause && e.cause !== 'exit' ? e.cause : '';
  const detail = e.cause === 'stopped' || e.cause === 'spawn-failed' ? '' : what;
  return `${[cause, detail].filter(Boolean).join(' ')}${e.forced ? ' (forced)' : ''} ${since(e.at)} ago`;
}

export async function start(c: Client, out: Out, account: string): Promise<void> {
  const { body } = await c.call<BotView>('POST', `/bots/${encodeURIComponent(account)}/start`);
  out.write(out.json ? json(body) : `${account}: ${paint(body.state, body.state, useColor())} (pid ${body.pid}${body.keyId ? `, key ${body.keyId}` : ''})\n`);
}

export async function stop(c: Client, out: Out, account: string, graceMs?: number, force = false): Promise<void> {
  const req = force ? { force: true } : graceMs === undefined ? undefined : { graceMs };
  const { body } = await c.call<BotView>('POST', `/bots/${encodeURIComponent(account)}/stop`, req);
  out.write(out.json ? json(body) : `${account}: ${paint(body.state, body.state, useColor())} (last exit: ${exitText(body)})\n`);
}

export async function restart(c: Client, out: Out, account: string, graceMs?: number): Promise<void> {
  const { body } = await c.call<BotView>('POST', `/bots/${encodeURIComponent(account)}/restart`, graceMs === undefined ? undefined : { graceMs });
  out.write(out.json ? json(body) : `${account}: ${paint(body.state, body.state, useColor())} (pid ${body.pid})\n`);
}

export async function status(c: Client, out: Out, account?: string): Promise<void> {
  const color = useColor();
  if (account !== undefined) {
    const { body: b } = await c.call<BotView>('GET', `/bots/${encodeURIComponent(account)}`);
    if (out.json) return out.write(json(b));
    const rows: [string, string][] = [
      ['account', b.account],
      ['name', b.name],
      ['broker', `${b.broker || '-'} (${b.brokerUsername || '-'})`],
      ['state', paint(b.state, b.state, color)],
      ['pid', b.pid === null ? '-' : String(b.pid)],
      ['uptime', since(b.startedAt)],
      ['restarts', String(b.restarts)],
      ['key', b.keyId ?? '-'],
      ['nonce errors', `${b.nonceErrors.inWindow} in window, ${b.nonceErrors.total} total`],
      ['last exit', exitText(b)],
      ['lock', b.lock ? `token ${b.lock.token}, held by ${b.lock.holder} since ${b.lock.since}` : '-'],
    ];
    return out.write(rows.map(([k, v]) => `${k.padEnd(13)}${v}`).join('\n') + '\n');
  }
  const { body } = await c.call<{ bots: BotView[] }>('GET', '/bots');
  if (out.json) return out.write(json(body));
  out.write(
    table(
      ['ACCOUNT', 'STATE', 'PID', 'UPTIME', 'RESTARTS', 'KEY', 'NONCE', 'LAST EXIT', 'NAME'],
      body.bots.map((b) => [
        b.account,
        b.state,
        b.pid === null ? '-' : String(b.pid),
        b.state === 'running' || b.state === 'starting' ? since(b.startedAt) : '-',
        String(b.restarts),
        b.keyId ?? '-',
        `${b.nonceErrors.inWindow}/${b.nonceErrors.total}`,
        exitText(b),
        b.name,
      ]),
      color,
      [1],
    ),
  );
}

interface HealthBody {
  status: string;
  uptimeMs: number;
  version: string;
  bots: Record<string, number>;
  checks: { name: string; status: string; detail?: string }[];
}

export async function health(c: Client, out: Out): Promise<boolean> {
  let body: HealthBody;
  try {
    body = (await c.call<HealthBody>('GET', '/health')).body;
  } catch (err) {
    // 503 still carries the checks: show them, then fail.
    if (err instanceof RefusedError && err.status === 503) body = err.body as unknown as HealthBody;
    else throw err;
  }
  const color = useColor();
  if (out.json) out.write(json(body));
  else {
    out.write(`status ${paint(body.status, body.status, color)}  version ${body.version}  up ${human(body.uptimeMs)}  bots ${Object.entries(body.bots).filter(([, n]) => n > 0).map(([k, n]) => `${k}=${n}`).join(' ')}\n`);
    out.write(table(['CHECK', 'STATUS', 'DETAIL'], body.checks.map((ch) => [ch.name, ch.status, ch.detail ?? '']), color, [1]));
  }
  return body.status !== 'failing';
}

interface KeyRow {
  id: string;
  state: string;
  account: string | null;
  cooldownUntil: string | null;
  nonceErrors: number;
}

export async function keys(c: Client, out: Out): Promise<void> {
  const { body } = await c.call<{ keys: KeyRow[] }>('GET', '/keys');
  if (out.json) return out.write(json(body));
  const now = Date.now();
  out.write(
    table(
      ['KEY', 'STATE', 'ACCOUNT', 'COOLS FOR', 'NONCE ERRORS'],
      body.keys.map((k) => [k.id, k.state, k.account ?? '-', k.cooldownUntil ? human(Date.parse(k.cooldownUntil) - now) : '-', String(k.nonceErrors)]),
      useColor(),
      [1],
    ),
  );
}

export async function enableKey(c: Client, out: Out, id: string): Promise<void> {
  const { body } = await c.call<{ enabled: boolean; key: KeyRow }>('POST', `/keys/${encodeURIComponent(id)}/enable`);
  out.write(out.json ? json(body) : `${id}: ${body.key.state}${body.enabled ? ' (enabled again)' : ' (was not rejected: nothing changed)'}\n`);
}

export async function logs(c: Client, out: Out, account: string, lines: number, follow: boolean): Promise<void> {
  const a = encodeURIComponent(account);
  if (!follow) {
    const { text } = await c.call('GET', `/bots/${a}/logs?lines=${lines}`);
    return out.write(text);
  }
  let first = true;
  await followSocket(c, () => `/bots/${a}/logs/stream?lines=${first ? lines : 0}`, (msg) => {
    first = false;
    out.write(`${msg}\n`);
  });
}

export interface EventOpts {
  types?: string;
  account?: string;
  since?: number;
}

export async function events(c: Client, out: Out, o: EventOpts): Promise<void> {
  let last = o.since;
  const color = useColor();
  await followSocket(
    c,
    () => {
      const q = new URLSearchParams();
      if (o.types) q.set('types', o.types);
      if (o.account) q.set('account', o.account);
      if (last !== undefined) q.set('since', String(last));
      const s = q.toString();
      return `/events${s ? `?${s}` : ''}`;
    },
    (msg) => {
      const e = JSON.parse(msg) as { id: number; type: string; at: string; account?: string; [k: string]: unknown };
      // Resume point if the connection drops: nothing missed, nothing twice.
      last = e.id;
      if (out.json) return out.write(`${msg}\n`);
      const { id, type, at, account, ...rest } = e;
      const extra = Object.entries(rest)
        .filter(([, v]) => v !== null && typeof v !== 'object')
        .map(([k, v]) => `${k}=${typeof v === 'string' && v.includes(' ') ? JSON.stringify(v) : String(v)}`)
        .join(' ');
      out.write(`${String(id).padStart(6)} ${at} ${paint(type.padEnd(20), type.split('.')[1] ?? '', color)} ${(account ?? '-').padEnd(14)} ${extra}\n`);
    },
  );
}

/**
 * Follows a websocket until SIGINT/SIGTERM, reconnecting (with backoff) when the
 * daemon goes away; `path()` is asked again on each reconnect (resume points).
 */
async function followSocket(c: Client, path: () => string, onMessage: (m: string) => void): Promise<void> {
  let stopping = false;
  let current: WebSocket | null = null;
  const stop = () => {
    stopping = true;
    current?.close();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  let delay = 100;
  let connectedOnce = false;
  while (!stopping) {
    try {
      const ws = await c.socket(path(), onMessage);
      current = ws;
      connectedOnce = true;
      delay = 100;
      await new Promise<void>((resolve) => {
        ws.once('close', () => resolve());
        ws.once('error', () => resolve());
      });
    } catch (err) {
      // The first connection must work (exit 3 / 1 at once); later drops are retried.
      if (!connectedOnce || err instanceof RefusedError) throw err;
      if (!(err instanceof UnreachableError)) throw err;
    }
    if (stopping) break;
    process.stderr.write(`botwarden: connection to ${c.target.url} lost; reconnecting\n`);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(2000, delay * 2);
    c.relocate();
  }
}

/** A lease as the API sends it. */
type LeaseRow = Static<typeof Lease>;

export async function leases(c: Client, out: Out): Promise<void> {
  const { body } = await c.call<{ leases: LeaseRow[] }>('GET', '/leases');
  if (out.json) return out.write(json(body));
  if (body.leases.length === 0) return out.write('no leases (SQLite mode, or no account is held)\n');
  const now = Date.now();
  out.write(
    table(
      ['ACCOUNT', 'HOLDER', 'HOST', 'SINCE', 'EXPIRES IN', 'TOKEN', 'MINE'],
      body.leases.map((l) => [l.account, l.holder, l.host, since(l.since), human(Date.parse(l.expiresAt) - now), String(l.token), l.mine ? 'yes' : 'no']),
      useColor(),
    ),
  );
}

/** The dashboard URL with the token in its fragment (never sent to a server, never in a log). */
export function dashboardUrl(c: Client, out: Out): void {
  const url = `${c.target.url}/#token=${encodeURIComponent(c.target.token ?? '')}`;
  out.write(out.json ? json({ url }) : `${url}\n`);
}

export interface AuditOpts {
  account?: string;
  since?: number;
  limit: number;
}

interface AuditEvent {
  id: number;
  at: string;
  account?: string;
  actor: string;
  role: string | null;
  remote: string;
  method: string;
  route: string;
  status: number;
}

/** SPEC 18: who did what: every change and every refused request (the newest `limit`, oldest first; or those after --since). */
export async function audit(c: Client, out: Out, o: AuditOpts): Promise<void> {
  const q = new URLSearchParams({ types: 'audit', limit: String(o.limit) });
  if (o.account) q.set('account', o.account);
  if (o.since !== undefined) q.set('since', String(o.since));
  const { body } = await c.call<{ events: AuditEvent[] }>('GET', `/events/history?${q.toString()}`);
  if (out.json) return out.write(json(body));
  if (body.events.length === 0) return out.write('no audit events\n');
  out.write(
    table(
      ['ID', 'AT', 'ACTOR', 'ROLE', 'REMOTE', 'METHOD', 'ROUTE', 'ACCOUNT', 'STATUS'],
      body.events.map((e) => [String(e.id), e.at, e.actor, e.role ?? '-', e.remote, e.method, e.route, e.account ?? '-', String(e.status)]),
      useColor(),
    ),
  );
}
