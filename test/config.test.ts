import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfigFile, parseConfig } from '../src/config/load.js';
import { effectiveListen, resolveSettings } from '../src/config/settings.js';
import { tmpDir } from './helper.js';

function problemsOf(raw: unknown): string[] {
  try {
    parseConfig(raw, { baseDir: '/' });
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('config file', () => {
  it('fills defaults and resolves cwd relative to the config file folder', () => {
    const dir = tmpDir();
    const file = path.join(dir, 'bw.yaml');
    mkdirSync(path.join(dir, 'bots'));
    writeFileSync(file, 'accounts:\n  kraken-main:\n    command: [node, bot.js]\n    cwd: bots\n');
    const cfg = loadConfigFile(file);
    const a = cfg.accounts.get('kraken-main')!;
    expect(a).toMatchObject({
      id: 'kraken-main',
      name: 'kraken-main',
      cwd: path.join(dir, 'bots'),
      duplicates: 'kill',
      startMs: 1000,
      stop: { signal: 'SIGTERM', graceMs: 30000 },
      restart: { policy: 'on-failure', maxRestarts: 5, backoffMs: 1000, maxBackoffMs: 30000 },
      nonceErrors: { patterns: [], rotateAfter: 3, windowMs: 60000, cooldownMs: 900000 },
    });
    expect(cfg.daemon).toMatchObject({ scanIntervalMs: 1000, healthIntervalMs: 5000, onShutdown: 'stop-bots', allowedHosts: [] });
  });

  it('lists every problem with its path, schema and semantic ones together', () => {
    const problems = problemsOf({
      daemon: { onShutdown: 'explode', bogus: 1 },
      keys: { k1: { keyEnv: 'K' } },
      accounts: {
        'bad id': { command: ['x'] },
        a: { command: [], startMs: -1, stop: { signal: 'SIGFOO' }, match: '(', env: { BOTWARDEN_ACCOUNT: 'x' } },
        b: { command: ['x'], restart: { backoffMs: 5000, maxBackoffMs: 10 }, keys: { pool: ['k9'], envKey: 'K', envSecret: 'S' } },
      },
    });
    const text = problems.join('\n');
    for (const p of [
      '/daemon/onShutdown',
      '/daemon/bogus',
      '/keys/k1/secretEnv',
      '/accounts/bad id',
      '/accounts/a/command',
      '/accounts/a/startMs',
      '/accounts/a/stop/signal',
      '/accounts/a/match: not a valid regular expression',
      '/accounts/a/env/BOTWARDEN_ACCOUNT',
      '/accounts/b/restart/maxBackoffMs: must be >= backoffMs',
      "/accounts/b/keys/pool/0: unknown key 'k9'",
    ]) {
      expect(text).toContain(p);
    }
  });

  it('refuses a postgres lock backend without a URL instead of falling back to local locks', () => {
    const problems = problemsOf({ lock: { backend: 'postgres' }, accounts: {} });
    expect(problems.join('\n')).toContain('/lock/url: the postgres backend needs a connection URL');
    expect(problemsOf({ lock: { backend: 'sqlite' }, accounts: {} })).toEqual([]);
  });

  it('refuses YAML syntax errors and a missing file clearly', () => {
    const dir = tmpDir();
    const file = path.join(dir, 'bad.yaml');
    writeFileSync(file, 'accounts: [unclosed\n');
    expect(() => loadConfigFile(file)).toThrow(/YAML/);
    expect(() => loadConfigFile(path.join(dir, 'missing.yaml'))).toThrow(/cannot read the file/);
  });
});

describe('settings precedence: flags > env > file > defaults', () => {
  const cfg = parseConfig({ daemon: { listen: '127.0.0.1:8080' }, accounts: {} }, { baseDir: '/' });

  it('uses defaults when nothing is given', () => {
    const s = resolveSettings({}, {}, '/srv');
    expect(s).toMatchObject({ configPath: '/srv/config/botwarden.yaml', dataDir: '/srv/data', envFile: '/srv/.env', logLevel: 'info', token: undefined });
    expect(effectiveListen(s, null)).toEqual({ host: '127.0.0.1', port: 7070 });
  });

  it('the file beats defaults, env beats the file, flags beat env', () => {
    expect(effectiveListen(resolveSettings({}, {}, '/'), cfg)).toEqual({ host: '127.0.0.1', port: 8080 });
    const env = { BOTWARDEN_LISTEN: '127.0.0.1:9090', BOTWARDEN_DATA_DIR: '/env/data', BOTWARDEN_CONFIG: '/env/c.yaml', BOTWARDEN_ENV_FILE: '/env/.env', BOTWARDEN_TOKEN: 't0k3n', BOTWARDEN_LOG_LEVEL: 'debug' };
    const fromEnv = resolveSettings({}, env, '/');
    expect(effectiveListen(fromEnv, cfg)).toEqual({ host: '127.0.0.1', port: 9090 });
    expect(fromEnv).toMatchObject({ dataDir: '/env/data', configPath: '/env/c.yaml', envFile: '/env/.env', token: 't0k3n', logLevel: 'debug' });
    const fromFlags = resolveSettings({ listen: '[::1]:7000', dataDir: 'd', config: 'c.yaml', envFile: 'e' }, env, '/w');
    expect(effectiveListen(fromFlags, cfg)).toEqual({ host: '::1', port: 7000 });
    expect(fromFlags).toMatchObject({ dataDir: '/w/d', configPath: '/w/c.yaml', envFile: '/w/e' });
  });
});
