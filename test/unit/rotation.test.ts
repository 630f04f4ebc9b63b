/**
 * Key rotation decided by the controller on the fake host: the bot's output is a real log file
 * (the fake spawn creates it, as the spawner does), followed by the real tailer; time is the
 * ManualClock. Without nonce facts (no clock source, no holders) a trip's cause is `unknown`:
 * stop, cool the key down, restart on the next through the start gate.
 */
import { appendFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../helper.js';
import { closeWorlds, world, type World } from './harness.js';

let w: World | undefined;
afterEach(closeWorlds);

const SECRETS = { K1: 'key-one', S1: 'sec-one', K2: 'key-two', S2: 'sec-two' };
const KEYS = { k1: { keyEnv: 'K1', secretEnv: 'S1' }, k2: { keyEnv: 'K2', secretEnv: 'S2' } };
const pool = (p: string[]) => ({ pool: p, envKey: 'API_KEY', envSecret: 'API_SECRET' });
const nonce = { patterns: ['kraken'], rotateAfter: 3, windowMs: 60_000, cooldownMs: 900_000 };

async function trip(x: World, account: string, n = 3): Promise<void> {
  const log = path.join(x.logsDir, `${account}.log`);
  const before = x.events.history(0, 1000, { types: ['nonce.error'] }).length;
  for (let i = 0; i < n; i++) appendFileSync(log, 'kraken {"error":["EAPI:Invalid nonce"]}\n');
  // The tailer reads on fs.watch (real time): wait for its lines, then let the controller act.
  await waitFor(() => x.events.history(0, 1000, { types: ['nonce.error'] }).length >= before + n, { what: 'nonce errors read' });
  await x.run(200);
}

describe('key rotation (the nonce breaker)', () => {
  it('3 nonce errors: stop, k1 cools down, the bot restarts on k2 through the gate, with k2 in its environment', async () => {
    w = await world({ a: { keys: pool(['k1', 'k2']), nonceErrors: nonce } }, { extra: { keys: KEYS }, env: SECRETS });
    await w.sup.start('a');
    expect(w.host.spawned[0]!.env.API_KEY).toBe('key-one');
    const passes = w.gate.passes;
    await trip(w, 'a');
    expect(w.events.history(0, 100, { types: ['key.rotated'] })[0]).toMatchObject({ from: 'k1', to: 'k2', cause: 'unknown' });
    expect(w.host.spawned).toHaveLength(2);
    expect(w.host.spawned[1]!.env.API_KEY).toBe('key-two');
    expect(w.gate.passes).toBe(passes + 1);
    expect(w.sup.get('a').view()).toMatchObject({ keyId: 'k2', restarts: 1 });
    expect(w.running('a')).toHaveLength(1);
  });

  it('no key left to rotate to: fatal (keys-exhausted), the lock and the key released', async () => {
    w = await world({ a: { keys: pool(['k1']), nonceErrors: nonce } }, { extra: { keys: KEYS }, env: SECRETS });
    await w.sup.start('a');
    await trip(w, 'a');
    expect(w.sup.get('a').view()).toMatchObject({ state: 'fatal', keyId: null });
    expect(w.events.history(0, 100, { types: ['bot.fatal'] })[0]).toMatchObject({ reason: 'keys-exhausted' });
    expect(w.running('a')).toEqual([]);
    expect(await w.locks.list()).toEqual([]);
  });

  it('two accounts on one pool never hold one key: the rotating bot skips the key the other holds', async () => {
    w = await world({ a: { keys: pool(['k1', 'k2']), nonceErrors: nonce }, b: { keys: pool(['k1', 'k2']), nonceErrors: nonce } }, { extra: { keys: KEYS }, env: SECRETS });
    await w.sup.start('a');
    await w.sup.start('b');
    expect([w.sup.get('a').keyId, w.sup.get('b').keyId]).toEqual(['k1', 'k2']);
    await trip(w, 'a');
    // k1 cools down, k2 is b's: nothing for a.
    expect(w.sup.get('a').view()).toMatchObject({ state: 'fatal', keyId: null });
    expect(w.sup.get('b').view()).toMatchObject({ state: 'running', keyId: 'k2' });
  });
});
