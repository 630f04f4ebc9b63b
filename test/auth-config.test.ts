/** SPEC 18 config checks for auth.tokens: set, long enough, printable, each its own; never printed; never a bot's. */
import { describe, expect, it } from 'vitest';
import { ConfigError, configSecrets, parseConfig } from '../src/config/load.js';
import { FIXTURES, fixture } from './helper.js';

const base = { accounts: { rla: { command: fixture('bot.js') } } };
function problems(raw: object, env: NodeJS.ProcessEnv): string[] {
  try {
    parseConfig({ ...base, ...raw }, { baseDir: FIXTURES, env });
    return [];
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
}

describe('auth.tokens', () => {
  it('resolves each token from the environment, with its role; masked with the other config secrets', () => {
    const env = { ...process.env, RL_A: 'a-long-enough-token-000', RL_B: 'b-long-enough-token-000' };
    const c = parseConfig({ ...base, auth: { tokens: { phone: { role: 'viewer', tokenEnv: 'RL_A' }, ci: { role: 'operator', tokenEnv: 'RL_B' } } } }, { baseDir: FIXTURES, env });
    expect(c.auth?.tokens).toEqual([
      { name: 'phone', role: 'viewer', tokenEnv: 'RL_A', token: 'a-long-enough-token-000' },
      { name: 'ci', role: 'operator', tokenEnv: 'RL_B', token: 'b-long-enough-token-000' },
    ]);
    expect(configSecrets(c)).toEqual(expect.arrayContaining(['a-long-enough-token-000', 'b-long-enough-token-000']));
    expect(parseConfig(base, { baseDir: FIXTURES }).auth).toEqual({ tokens: [] });
    expect(parseConfig(base, { baseDir: FIXTURES }).daemon.trustProxy).toBe(false);
  });

  it('lists every problem by path, without the token values', () => {
    const env = { RL_SHORT: 'short-one', RL_SPACE: 'has a space in it here', RL_X: 'the-same-token-twice-0', RL_Y: 'the-same-token-twice-0' };
    const p = problems(
      {
        auth: {
          tokens: {
            unset: { role: 'viewer', tokenEnv: 'RL_NOT_SET' },
            short: { role: 'viewer', tokenEnv: 'RL_SHORT' },
            spaced: { role: 'viewer', tokenEnv: 'RL_SPACE' },
            x: { role: 'operator', tokenEnv: 'RL_X' },
            y: { role: 'admin', tokenEnv: 'RL_Y' },
            'api-token': { role: 'admin', tokenEnv: 'RL_X' },
            bad: { role: 'root', tokenEnv: 'RL_X' },
          },
        },
        accounts: { rla: { command: fixture('bot.js'), passEnv: ['RL_X'] } },
      },
      { ...process.env, ...env },
    );
    const text = p.join('\n');
    expect(text).toContain('/auth/tokens/unset/tokenEnv: RL_NOT_SET is not set in the environment or the env file');
    expect(text).toContain('/auth/tokens/short/tokenEnv: the token in RL_SHORT has 9 characters; use 16 or more');
    expect(text).toContain('/auth/tokens/spaced/tokenEnv: the token in RL_SPACE must be printable ASCII without spaces');
    expect(text).toContain('/auth/tokens/y/tokenEnv: the same token as /auth/tokens/x');
    expect(text).toContain("/auth/tokens/api-token: 'api-token' is the name of the generated data/api-token");
    expect(text).toMatch(/\/auth\/tokens\/bad\/role/);
    expect(text).toContain('/accounts/rla/passEnv/0: RL_X holds an API token (auth.tokens); it is never passed to a bot');
    for (const v of Object.values(env)) expect(text).not.toContain(v);
  });
});
