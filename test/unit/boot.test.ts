/**
 * Adoption decisions at boot (reconcile) and liveness decisions, on the fake host: the daemon is
 * "SIGKILLed" by silencing its view of the machine (it hears no exit, runs no timer), and a new
 * one boots on the same database and processes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { notifyPath } from '../../src/host/notify.js';
import { closeWorlds, lockOf, world, type World } from './harness.js';
import path from 'node:path';

let w: World | undefined;
afterEach(closeWorlds);


describe('boot: adoption decisions', () => {
  it('a live bot is adopted: same pid, running, lock kept, no spawn', async () => {
    const a = await world({ a: {} });
    const pid = (await a.sup.start('a')).pid!;
    await a.run(150);
    const token = (await lockOf(a, 'a'))!.token;
    w = await a.reboot();
    expect(w.sup.get('a').view()).toMatchObject({ state: 'running', pid });
    expect((await lockOf(w, 'a'))!.token).toBe(token);
    expect(w.host.spawned).toHaveLength(1);
    expect(w.types('a').slice(-2)).toEqual(['bot.running', 'bot.adopted']);
    // The adopted bot's exit is heard (an identity watch) and its policy applied: its code is
    // unknown (not our child), so it counts as a failure.
    w.host.crash(pid);
    await w.settle();
    expect(w.sup.get('a').view()).toMatchObject({ state: 'backoff', lastExit: { code: null, signal: null, cause: 'exit' } });
  });

  it('a bot that died while no daemon ran: its exit recorded (whileDaemonDown), then restarted through the gate', async () => {
    const a = await world({ a: { restart: { policy: 'always', backoffMs: 100 } } });
    const pid = (await a.sup.start('a')).pid!;
    await a.run(150);
    a.host.crashDaemon();
    a.host.crash(pid);
    w = await a.reboot();
    expect(w.events.history(0, 100, { types: ['bot.exited'] }).at(-1)).toMatchObject({ pid, whileDaemonDown: true, code: null });
    expect(w.sup.get('a').view().state).toBe('backoff');
    await w.run(300);
    expect(w.sup.get('a').view().state).toBe('running');
    expect(w.gate.passes).toBe(1);
    expect(w.running('a')).toHaveLength(1);
  });

  it('a dead leader’s live workers are stopped before its account starts again (SPEC 14.4)', async () => {
    const a = await world({ a: { restart: { policy: 'always', backoffMs: 100 }, stop: { graceMs: 300 } } });
    a.host.behave('a', { workers: 2, onTerm: 'ignore' });
    const pid = (await a.sup.start('a')).pid!;
    await a.run(150);
    a.host.crashDaemon();
    a.host.crash(pid);
    const workers = a.host.live('a');
    expect(workers).toHaveLength(2);
    // The boot waits for the workers' grace and SIGKILL: run the clock while it boots.
    const booting = a.reboot();
    await a.run(400);
    w = await booting;
    expect(workers.every((p) => !p.alive && p.signals.join() === 'SIGTERM,SIGKILL')).toBe(true);
    expect(w.events.history(0, 100, { types: ['bot.exited'] }).at(-1)).toMatchObject({ pid, forced: true, whileDaemonDown: true });
    await w.run(300);
    expect(w.running('a').filter((p) => p.leader)).toHaveLength(1);
  });

  it('an account that left the config while its bot ran: adopted as unconfigured, stoppable, never restarted', async () => {
    const a = await world({ a: {}, b: {} });
    const pid = (await a.sup.start('b')).pid!;
    await a.run(150);
    w = await a.reboot({ a: {} });
    const b = w.sup.list().find((v) => v.account === 'b');
    expect(b).toMatchObject({ state: 'running', pid, configured: false });
    await expect(w.sup.start('b')).rejects.toMatchObject({ code: 'UNKNOWN_ACCOUNT' });
    const stop = w.sup.stop('b');
    await w.run(100);
    expect((await stop).state).toBe('stopped');
    expect(await lockOf(w, 'b')).toBeNull();
    await w.run(10_000);
    expect(w.host.live('b')).toEqual([]);
  });

  it('a spawn the last daemon did not record (no pid on its row) is found by its marker and adopted', async () => {
    const a = await world({ a: {} });
    a.registry.createInstance({ id: 'inst-1', account: 'a', daemonId: 'old', keyId: null, logPath: path.join(a.logsDir, 'a.log'), startedAt: new Date(a.clock.now()).toISOString() });
    const orphan = a.host.startOrphan('a', 'inst-1');
    w = await a.reboot();
    expect(w.sup.get('a').view()).toMatchObject({ state: 'running', pid: orphan.pid, instanceId: 'inst-1' });
    expect((await lockOf(w, 'a'))?.instanceId).toBe('inst-1');
  });

  it('a lock whose instance has no live process is removed at boot; one whose worker lives is kept', async () => {
    const a = await world({ a: { restart: { policy: 'never' } }, b: { restart: { policy: 'never' }, stop: { graceMs: 100 } } });
    a.host.behave('b', { workers: 1, onTerm: 'unkillable' });
    const pa = (await a.sup.start('a')).pid!;
    const pb = (await a.sup.start('b')).pid!;
    await a.run(150);
    a.host.crashDaemon();
    a.host.crash(pa);
    a.host.crash(pb);
    const booting = a.reboot();
    await a.run(8000);
    w = await booting;
    expect(await lockOf(w, 'a')).toBeNull();
    expect(w.events.history(0, 100, { types: ['lock.stale_removed'] }).map((e) => e.account)).toEqual(['a']);
    // b's worker outlived SIGKILL: its lock stays until it is gone.
    expect(await lockOf(w, 'b')).not.toBeNull();
    await expect(w.sup.start('b')).rejects.toMatchObject({ code: 'ACCOUNT_LOCKED' });
    // Its bot shows the tree (fatal, unkillable) and lets the lock go once the tree is gone.
    expect(w.sup.get('b').view().state).toBe('fatal');
    for (const p of w.host.live('b')) p.die({ code: null, signal: 'SIGKILL' });
    await w.run(1100);
    expect(await lockOf(w, 'b')).toBeNull();
  });
});

describe('boot: trees that outlived SIGKILL (found by the unit walk, seeds 3 and 8)', () => {
  it('one left by the last daemon is shown after a reboot (fatal, unkillable) and keeps its lock until it is gone', async () => {
    const a = await world({ a: { stop: { graceMs: 100 } } });
    a.host.behave('a', { onTerm: 'unkillable' });
    const pid = (await a.sup.start('a')).pid!;
    const s = a.sup.stop('a');
    await a.run(7200);
    expect((await s).state).toBe('fatal');
    w = await a.reboot();
    expect(w.sup.get('a').view().state).toBe('fatal');
    expect(w.sup.get('a').unkillable).toMatchObject({ pid });
    expect(await lockOf(w, 'a')).not.toBeNull();
    await expect(w.sup.start('a')).rejects.toMatchObject({ code: 'ACCOUNT_LOCKED' });
    w.host.crash(pid, { code: null, signal: 'SIGKILL' });
    await w.run(1100);
    expect(await lockOf(w, 'a')).toBeNull();
    await w.sup.start('a');
    expect(w.running('a')).toHaveLength(1);
  });

  it('a dead leader’s workers that outlive SIGKILL at boot: shown on their bot, lock kept, even for an account no longer configured', async () => {
    const a = await world({ a: {}, b: { stop: { graceMs: 100 } } });
    a.host.behave('b', { workers: 1, onTerm: 'unkillable' });
    const pid = (await a.sup.start('b')).pid!;
    await a.run(150);
    a.host.crashDaemon();
    a.host.crash(pid);
    const booting = a.reboot({ a: {} });
    // The unconfigured account's own grace (the default), SIGKILL, the kill wait.
    await a.run(40_000);
    w = await booting;
    const b = w.sup.all().find((x) => x.id === 'b')!;
    expect(b.view()).toMatchObject({ state: 'fatal', configured: false });
    expect(b.unkillable).not.toBeNull();
    expect(await lockOf(w, 'b')).not.toBeNull();
    // Once gone: the lock goes, and the instance's exit is recorded (no daemon had recorded it).
    const instanceId = b.unkillable!.instanceId;
    expect(w.registry.liveInstances().map((i) => i.id)).toContain(instanceId);
    for (const p of w.host.live('b')) p.die({ code: null, signal: 'SIGKILL' });
    await w.run(1100);
    expect(await lockOf(w, 'b')).toBeNull();
    expect(w.registry.liveInstances().map((i) => i.id)).not.toContain(instanceId);
    expect(w.events.history(0, 100, { types: ['bot.exited'] }).at(-1)).toMatchObject({ instanceId, forced: true, reason: 'unkillable' });
  });
});

describe('liveness decisions (SPEC 16)', () => {
  it('silence past silenceMs: bot.unresponsive, a restart through the gate; past maxRestarts, fatal (unresponsive)', async () => {
    w = await world({ a: { restart: { policy: 'always', maxRestarts: 2, backoffMs: 100 }, liveness: { graceMs: 1000, silenceMs: 2000, action: 'restart' } } });
    await w.sup.start('a');
    const passes = w.gate.passes;
    await w.run(3200);
    expect(w.events.history(0, 100, { types: ['bot.unresponsive'] })).toHaveLength(1);
    expect(w.events.history(0, 100, { types: ['bot.unresponsive'] })[0]).toMatchObject({ check: 'silence', action: 'restart' });
    expect(w.gate.passes).toBe(passes + 1);
    expect(w.host.spawned).toHaveLength(2);
    await w.run(20_000);
    expect(w.sup.get('a').view().state).toBe('fatal');
    expect(w.events.history(0, 100, { types: ['bot.fatal'] })[0]).toMatchObject({ reason: 'unresponsive' });
    expect(w.host.spawned).toHaveLength(3);
    expect(await lockOf(w, 'a')).toBeNull();
  });

  it('action alert: the event only, the bot keeps running', async () => {
    w = await world({ a: { liveness: { graceMs: 1000, silenceMs: 2000, action: 'alert' } } });
    await w.sup.start('a');
    await w.run(10_000);
    expect(w.events.history(0, 100, { types: ['bot.unresponsive'] })).toHaveLength(1);
    expect(w.sup.get('a').view().state).toBe('running');
    expect(w.host.spawned).toHaveLength(1);
  });

  it('notify: READY=1 makes the bot running (not startMs); WATCHDOG=1 missing past watchdogMs is unresponsive', async () => {
    w = await world({ a: { startMs: 100, liveness: { graceMs: 1000, notify: true, watchdogMs: 1000, action: 'alert' } } });
    await w.sup.start('a');
    await w.run(500);
    expect(w.sup.get('a').view().state).toBe('starting');
    const sock = notifyPath(path.dirname(w.logsDir), 'a');
    expect(w.host.spawned[0]!.env.NOTIFY_SOCKET).toBe(sock);
    w.host.notify(sock, { ready: true, watchdog: true, status: 'trading' });
    await w.settle();
    expect(w.sup.get('a').view()).toMatchObject({ state: 'running', status: 'trading' });
    for (let i = 0; i < 5; i++) {
      await w.run(800);
      w.host.notify(sock, { watchdog: true });
    }
    expect(w.events.history(0, 100, { types: ['bot.unresponsive'] })).toHaveLength(0);
    await w.run(1500);
    expect(w.events.history(0, 100, { types: ['bot.unresponsive'] })[0]).toMatchObject({ check: 'watchdog' });
  });

  it('an adopted notify bot: its watchdog counts from its first WATCHDOG=1 to the new daemon (a client that connected once, like sdnotify, never reaches it)', async () => {
    const a = await world({ a: { startMs: 100, liveness: { graceMs: 500, notify: true, watchdogMs: 1000, action: 'restart' } } });
    await a.sup.start('a');
    const sock = notifyPath(path.dirname(a.logsDir), 'a');
    a.host.notify(sock, { ready: true, watchdog: true });
    await a.run(500);
    expect(a.sup.get('a').view().state).toBe('running');
    w = await a.reboot();
    // Silent on the new socket for many watchdog periods: not restarted.
    await w.run(10_000);
    expect(w.events.history(0, 100, { types: ['bot.unresponsive'] })).toHaveLength(0);
    expect(w.host.spawned).toHaveLength(1);
    // A client that sends by path each time reaches it: from then on the watchdog holds.
    w.host.notify(sock, { watchdog: true });
    await w.run(1500);
    expect(w.events.history(0, 100, { types: ['bot.unresponsive'] })[0]).toMatchObject({ check: 'watchdog' });
  });

  it('a memory limit held for forMs: bot.limit_exceeded and a restart; below it for a moment resets the count', async () => {
    w = await world({ a: { restart: { maxRestarts: 5 }, limits: { memoryMB: 100, forMs: 2000, action: 'restart' } } });
    w.host.behave('a', { usage: { rssBytes: 200 * 1024 * 1024, cpuSeconds: 0 } });
    await w.sup.start('a');
    await w.run(1500);
    w.host.behave('a', { usage: { rssBytes: 50 * 1024 * 1024, cpuSeconds: 0 } });
    await w.run(1100);
    w.host.behave('a', { usage: { rssBytes: 200 * 1024 * 1024, cpuSeconds: 0 } });
    await w.run(1500);
    expect(w.events.history(0, 100, { types: ['bot.limit_exceeded'] })).toHaveLength(0);
    await w.run(2000);
    expect(w.events.history(0, 100, { types: ['bot.limit_exceeded'] })[0]).toMatchObject({ limit: 'memory', value: 200 * 1024 * 1024, action: 'restart' });
    expect(w.host.spawned).toHaveLength(2);
  });
});
