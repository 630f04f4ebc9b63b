import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { openDatabase } from '../src/db/open.js';
import { EventStore } from '../src/events/store.js';
import { fixture, makeConfig, startTestDaemon, sweepLeftovers, tmpDir, waitFor, type TestDaemon } from './helper.js';

let d: TestDaemon | undefined;
const sockets: WebSocket[] = [];
afterEach(async () => {
  for (const s of sockets) s.terminate();
  sockets.length = 0;
  await d?.close();
  d = undefined;
  expect(sweepLeftovers()).toEqual([]);
});

function connect(d: TestDaemon, query: string, headers: Record<string, string> = { authorization: `Bearer ${d.token}` }) {
  const ws = new WebSocket(`${d.url.replace('http', 'ws')}/events${query}`, { headers });
  sockets.push(ws);
  const got: any[] = [];
  ws.on('message', (m: Buffer) => got.push(JSON.parse(m.toString())));
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (req, res) => {
      req.destroy();
      reject(new Error(`HTTP ${res.statusCode}`));
    });
    ws.once('error', reject);
  });
  return { ws, got, opened };
}

const cfg = () => makeConfig({ daemon: { healthIntervalMs: 100 }, accounts: { a: { command: fixture('bot.js'), startMs: 50 }, b: { command: fixture('bot.js'), startMs: 50 } } });

describe('event stream', () => {
  it('streams bot events live over a websocket, filtered by type prefix and account', async () => {
    d = await startTestDaemon(cfg());
    const all = connect(d, '?types=bot.,lock.');
    const onlyB = connect(d, '?types=bot.running&account=b');
    await Promise.all([all.opened, onlyB.opened]);
    await d.req('POST', '/bots/a/start');
    await d.req('POST', '/bots/b/start');
    await waitFor(() => onlyB.got.length >= 1, { what: 'b running' });
    // Stop only once the bot has installed its SIGTERM handler, so it exits 0.
    await waitFor(async () => (await d!.req('GET', '/bots/a/logs?lines=5')).text.includes('ready'), { what: 'a ready' });
    await d.req('POST', '/bots/a/stop');
    await waitFor(() => all.got.some((e) => e.type === 'bot.stopped'), { what: 'a stopped' });
    expect(onlyB.got.map((e) => [e.type, e.account])).toEqual([['bot.running', 'b']]);
    const aTypes = all.got.filter((e) => e.account === 'a').map((e) => e.type);
    expect(aTypes).toEqual(['lock.acquired', 'bot.starting', 'bot.running', 'bot.stopping', 'bot.exited', 'lock.released', 'bot.stopped']);
    expect(all.got.every((e) => e.type.startsWith('bot.') || e.type.startsWith('lock.'))).toBe(true);
    expect(all.got.find((e) => e.type === 'bot.stopping')).toMatchObject({ reason: 'request', account: 'a' });
    expect(all.got.find((e) => e.type === 'bot.exited' && e.account === 'a')).toMatchObject({ code: 0, signal: null });
  });

  it('since=ID replays stored events then goes live with no gap and no duplicate at the seam', async () => {
    d = await startTestDaemon(cfg());
    for (let i = 0; i < 300; i++) d.events.emit('duplicate.suspected', { account: 'a', n: i });
    const since = d.events.lastId() - 250;
    // Keep emitting while the client connects and replays.
    let n = 0;
    const pump = setInterval(() => {
      for (let i = 0; i < 5; i++) d!.events.emit('duplicate.suspected', { account: 'a', n: 1000 + n++ });
    }, 1);
    const c = connect(d, `?since=${since}&types=duplicate.`);
    await c.opened;
    await new Promise((r) => setTimeout(r, 150));
    clearInterval(pump);
    const last = d.events.lastId();
    await waitFor(() => c.got.length > 0 && c.got[c.got.length - 1].id >= last - 0, { what: 'tail', timeoutMs: 15_000 });
    const ids = c.got.map((e) => e.id as number);
    // Exactly the stored matching events after `since`, in order: none missing, none twice.
    const stored = d.events.history(since, 100_000, { types: ['duplicate.'] }).map((e) => e.id);
    expect(ids).toEqual(stored);
    expect(ids[0]).toBe(since + 1);
    expect(ids.length).toBeGreaterThan(300);
  });

  it('refuses a websocket without a token (401) and accepts ?token=', async () => {
    d = await startTestDaemon(cfg());
    await expect(connect(d, '', {}).opened).rejects.toThrow('HTTP 401');
    await expect(connect(d, '?token=wrong', {}).opened).rejects.toThrow('HTTP 401');
    const ok = connect(d, `?token=${encodeURIComponent(d.token)}&types=health`, {});
    await ok.opened;
    // The periodic health event carries the same snapshot as GET /health.
    await waitFor(() => ok.got.length > 0, { what: 'health event' });
    expect(ok.got[0]).toMatchObject({ type: 'health', status: 'ok', bots: { total: 2 } });
    expect(ok.got[0].checks.map((c: { name: string }) => c.name)).toEqual(expect.arrayContaining(['storage', 'daemon-lock', 'lock-backend']));
  });

  it('GET /events/history pages with since and limit, and filters', async () => {
    d = await startTestDaemon(cfg());
    await d.req('POST', '/bots/a/start');
    await d.req('POST', '/bots/a/stop');
    const all = (await d.req('GET', '/events/history?types=bot.,lock.,daemon.')).body.events;
    expect(all[0].type).toBe('daemon.started');
    const page = (await d.req('GET', `/events/history?since=${all[0].id}&limit=2&types=bot.,lock.,daemon.`)).body.events;
    expect(page.map((e: { id: number }) => e.id)).toEqual([all[1].id, all[2].id]);
    const onlyLock = (await d.req('GET', '/events/history?types=lock.&account=a')).body.events;
    expect(onlyLock.map((e: { type: string }) => e.type)).toEqual(['lock.acquired', 'lock.released']);
  });
});

describe('event retention', () => {
  it('drops events older than retentionDays and beyond maxRows', () => {
    const clock = new ManualClock();
    const db = openDatabase(`${tmpDir()}/e.db`);
    const ev = new EventStore(db, () => clock.now());
    for (let i = 0; i < 10; i++) ev.emit('bot.running', { i });
    clock.advance(8 * 86_400_000);
    for (let i = 0; i < 150; i++) ev.emit('bot.running', { i });
    expect(ev.prune({ retentionDays: 7, maxRows: 100 })).toBe(60);
    const left = ev.history(0, 1000);
    expect(left).toHaveLength(100);
    expect(left[0]!.id).toBe(61);
    // Health snapshots live an hour, whatever the retention.
    ev.emit('health', { old: true });
    clock.advance(3_600_001);
    ev.emit('health', { old: false });
    expect(ev.prune({ retentionDays: 7, maxRows: 1000 })).toBe(1);
    expect(ev.history(0, 1000, { types: ['health'] }).map((e) => e.old)).toEqual([false]);
    db.close();
  });
});
