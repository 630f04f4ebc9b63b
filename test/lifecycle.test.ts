import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ManualClock } from '../src/clock.js';
import { afterEach, describe, expect, it } from 'vitest';
import { isAlive, readEnviron } from '../src/host/procfs.js';
import { fixture, makeConfig, startTestDaemon, sweepLeftovers, taggedProcesses, tmpDir, waitFor, type TestDaemon } from './helper.js';

let d: TestDaemon | undefined;
afterEach(async () => {
  await d?.close();
  d = undefined;
  expect(sweepLeftovers()).toEqual([]);
});

const base = { broker: 'kraken', brokerUsername: 'john', startMs: 200, stop: { graceMs: 2000 } };

describe('start and stop', () => {
  it('starts a detached bot with the env markers, reports it, and stops it gracefully', async () => {
    d = await startTestDaemon(makeConfig({ accounts: { 'kraken-main': { ...base, name: 'Kraken main', command: fixture('bot.js'), env: { PAIR: 'XBTUSD' } } } }));
    const res = await d.req('POST', '/bots/kraken-main/start');
    expect(res.status).toBe(201);
    const bot = res.body;
    expect(bot).toMatchObject({ account: 'kraken-main', name: 'Kraken main', state: 'starting', broker: 'kraken', brokerUsername: 'john' });
    expect(bot.pid).toBeGreaterThan(0);
    expect(bot.lock).toMatchObject({ pid: bot.pid, token: 1 });
    const env = readEnviron(bot.pid)!;
    expect(env.get('BOTWARDEN_ACCOUNT')).toBe('kraken-main');
    expect(env.get('BOTWARDEN_INSTANCE')).toBe(bot.instanceId);
    expect(env.get('PAIR')).toBe('XBTUSD');
    expect(env.has('BOTWARDEN_TOKEN')).toBe(false);
    // Its own session and group, not the daemon's.
    const stat = readFileSync(`/proc/${bot.pid}/stat`, 'latin1').split(') ')[1]!.split(' ');
    expect(Number(stat[2])).toBe(bot.pid); // pgid
    expect(Number(stat[3])).toBe(bot.pid); // sid

    await waitFor(async () => (await d!.req('GET', '/bots/kraken-main')).body.state === 'running', { what: 'running' });
    const stopped = await d.req('POST', '/bots/kraken-main/stop');
    expect(stopped.status).toBe(200);
    expect(stopped.body).toMatchObject({ state: 'stopped', pid: null, lock: null, lastExit: { code: 0, signal: null, forced: false } });
    expect(isAlive(bot.pid, null)).toBe(false);
    // Stopping a stopped bot is fine.
    expect((await d.req('POST', '/bots/kraken-main/stop')).status).toBe(200);
    const log = await d.req('GET', '/bots/kraken-main/logs?lines=5');
    expect(log.text).toContain('SIGTERM received');
  });

  it('refuses a second start with ACCOUNT_LOCKED naming account, broker user, start time and pid', async () => {
    d = await startTestDaemon(makeConfig({ accounts: { 'kraken-main': { ...base, name: 'Kraken main', command: fixture('bot.js') } } }));
    const first = (await d.req('POST', '/bots/kraken-main/start')).body;
    const second = await d.req('POST', '/bots/kraken-main/start');
    expect(second.status).toBe(409);
    expect(second.body.code).toBe('ACCOUNT_LOCKED');
    expect(second.body.error).toBe('Conflict');
    expect(second.body.message).toBe(
      `Account 'Kraken main' is already being traded! Broker: john. Started: ${first.startedAt} (pid ${first.pid}). ` +
        'You cannot run two bots on the same account: stop the other instance first, or choose another account.',
    );
    expect(second.body.lock).toMatchObject({ pid: first.pid, since: first.startedAt, token: first.lock.token });
    expect(taggedProcesses('kraken-main')).toEqual([first.pid]);
  });

  it('SIGKILLs a bot that ignores SIGTERM once its grace is over (on the daemon clock), and says so in lastExit', async () => {
    const clock = new ManualClock(Date.now());
    d = await startTestDaemon(makeConfig({ accounts: { stubborn: { ...base, command: fixture('no-killable.js'), stop: { graceMs: 300 } } } }), { clock });
    const bot = (await d.req('POST', '/bots/stubborn/start')).body;
    await waitFor(() => readFileSync(`${d!.dataDir}/logs/stubborn.log`, 'utf8').includes('ready'), { what: 'bot ready' });
    const stopping = d.req('POST', '/bots/stubborn/stop');
    await waitFor(() => readFileSync(`${d!.dataDir}/logs/stubborn.log`, 'utf8').includes('SIGTERM ignored'), { what: 'SIGTERM delivered' });
    // However long it really takes, the grace has not run out on the daemon's clock: no SIGKILL yet.
    await new Promise((r) => setTimeout(r, 300));
    expect(isAlive(bot.pid, null)).toBe(true);
    await clock.run(299);
    expect(isAlive(bot.pid, null)).toBe(true);
    await clock.run(20);
    const res = await stopping;
    expect(res.body.lastExit).toMatchObject({ signal: 'SIGKILL', code: null, forced: true });
    expect(isAlive(bot.pid, null)).toBe(false);
  });

  it('honours graceMs from the stop body', async () => {
    d = await startTestDaemon(makeConfig({ accounts: { stubborn: { ...base, command: fixture('no-killable.js'), stop: { graceMs: 30000 } } } }));
    await d.req('POST', '/bots/stubborn/start');
    await waitFor(() => readFileSync(`${d!.dataDir}/logs/stubborn.log`, 'utf8').includes('ready'));
    const res = await d.req('POST', '/bots/stubborn/stop', { body: { graceMs: 100 } });
    expect(res.body.lastExit.forced).toBe(true);
  });

  it.each([
    ['a grandchild in the group', '0'],
    ['a grandchild that called setsid', '1'],
  ])('stop leaves nothing of the tree behind: %s', async (_name, setsid) => {
    d = await startTestDaemon(makeConfig({ accounts: { tree: { ...base, command: fixture('grandchild.js'), env: { GRANDCHILD_SETSID: setsid }, stop: { graceMs: 400 } } } }));
    const bot = (await d.req('POST', '/bots/tree/start')).body;
    const line = await waitFor(() => /grandchild=(\d+)/.exec(readFileSync(`${d!.dataDir}/logs/tree.log`, 'utf8')), { what: 'grandchild pid' });
    const gc = Number(line[1]);
    expect(isAlive(gc, null)).toBe(true);
    expect(taggedProcesses('tree').sort()).toEqual([bot.pid, gc].sort());
    await d.req('POST', '/bots/tree/stop');
    expect(isAlive(gc, null)).toBe(false);
    expect(taggedProcesses('tree')).toEqual([]);
  });

  it('restart gives a new process and keeps one', async () => {
    d = await startTestDaemon(makeConfig({ accounts: { a: { ...base, command: fixture('bot.js') } } }));
    const first = (await d.req('POST', '/bots/a/start')).body;
    const res = await d.req('POST', '/bots/a/restart');
    expect(res.status).toBe(200);
    expect(res.body.pid).not.toBe(first.pid);
    expect(res.body.lock.token).toBeGreaterThan(first.lock.token);
    expect(taggedProcesses('a')).toEqual([res.body.pid]);
  });

  it('feeds every output line of the bot to the line scanners', async () => {
    d = await startTestDaemon(makeConfig({ accounts: { a: { ...base, command: fixture('bot.js'), env: { BOT_PRINT: 'EAPI:Invalid nonce|hello' } } } }));
    const seen: string[] = [];
    d.supervisor.onLine((account, line) => seen.push(`${account}: ${line}`));
    await d.req('POST', '/bots/a/start');
    await waitFor(() => seen.includes('a: hello'), { what: 'line' });
    expect(seen).toContain('a: EAPI:Invalid nonce');
  });

  it('rotates a bot log by size while the bot keeps writing to it (copy, then truncate)', async () => {
    d = await startTestDaemon(
      makeConfig({
        daemon: { logs: { maxBytes: 65_536, files: 2 } },
        accounts: { loud: { ...base, command: fixture('flood.js'), env: { FLOOD_RATE: '5000', FLOOD_SECONDS: '1', FLOOD_EVERY: '1000000' } } },
      }),
    );
    await d.req('POST', '/bots/loud/start');
    const log = `${d.dataDir}/logs/loud.log`;
    await waitFor(() => readFileSync(log, 'utf8').includes('flood done'), { timeoutMs: 10_000, what: 'flood done' });
    const { statSync, existsSync } = await import('node:fs');
    // ~400 KB written in 64 KiB files: rotated several times, 2 old files kept, the live one small.
    expect(existsSync(`${log}.1`)).toBe(true);
    expect(existsSync(`${log}.2`)).toBe(true);
    expect(existsSync(`${log}.3`)).toBe(false);
    expect(statSync(log).size).toBeLessThan(200_000);
    // After a truncation the bot's O_APPEND writes land at the new start: no hole of NUL bytes.
    expect(readFileSync(log, 'utf8').includes('\0')).toBe(false);
  });

  it('runs different accounts side by side', async () => {
    d = await startTestDaemon(makeConfig({ accounts: { a: { ...base, command: fixture('bot.js') }, b: { ...base, command: fixture('bot.js') } } }));
    const [a, b] = await Promise.all([d.req('POST', '/bots/a/start'), d.req('POST', '/bots/b/start')]);
    expect([a.status, b.status]).toEqual([201, 201]);
    expect(taggedProcesses().length).toBe(2);
  });

  it('a command that cannot be spawned is a clear 500 and the bot goes fatal without a lock', async () => {
    // The config check (SPEC 15) refuses a missing command at load: this one goes missing after it.
    const binary = path.join(tmpDir(), 'bot-binary');
    writeFileSync(binary, '#!/bin/sh\n', { mode: 0o755 });
    d = await startTestDaemon(makeConfig({ accounts: { broken: { ...base, command: [binary] } } }));
    rmSync(binary);
    const res = await d.req('POST', '/bots/broken/start');
    expect(res.status).toBe(500);
    expect(res.body.code).toBe('SPAWN_FAILED');
    expect(res.body.message).toContain(binary);
    const bot = (await d.req('GET', '/bots/broken')).body;
    expect(bot).toMatchObject({ state: 'fatal', lock: null, pid: null });
  });

  it('SIGTERM-style shutdown stops every bot in parallel', async () => {
    d = await startTestDaemon(
      makeConfig({ accounts: { a: { ...base, command: fixture('bot.js'), env: { BOT_EXIT_DELAY_MS: '300' } }, b: { ...base, command: fixture('bot.js'), env: { BOT_EXIT_DELAY_MS: '300' } } } }),
    );
    const pids = (await Promise.all([d.req('POST', '/bots/a/start'), d.req('POST', '/bots/b/start')])).map((r) => r.body.pid as number);
    // Both up: a bot prints `ready` in the turn that installs its SIGTERM handler.
    await waitFor(() => ['a', 'b'].every((a) => existsSync(`${d!.dataDir}/logs/${a}.log`) && readFileSync(`${d!.dataDir}/logs/${a}.log`, 'utf8').includes('ready')), { what: 'both ready' });
    const seen: string[] = [];
    d.events.subscribe((e) => (e.type === 'bot.stopping' || e.type === 'bot.stopped') && seen.push(`${e.type}:${String(e.reason)}`));
    await d.close();
    // In parallel: both are asked to stop before either is gone (one after the other would interleave).
    expect(seen).toEqual(['bot.stopping:shutdown', 'bot.stopping:shutdown', 'bot.stopped:shutdown', 'bot.stopped:shutdown']);
    for (const pid of pids) expect(isAlive(pid, null)).toBe(false);
  });
});
