/**
 * Settings precedence: CLI flags, then environment variables,
 * then the config file, then defaults.
 */
import path from 'node:path';
import { parseListen, type ListenAddress } from './load.js';
import type { Config } from './schema.js';

export interface Flags {
  config?: string | undefined;
  dataDir?: string | undefined;
  listen?: string | undefined;
  envFile?: string | undefined;
  leaveRunning?: boolean | undefined;
}

export interface Settings {
  configPath: string;
  dataDir: string;
  envFile: string;
  logLevel: string;
  /** From BOTWARDEN_TOKEN; undefined means: use or create <data-dir>/api-token. */
  token: string | undefined;
  /** Listen flag/env, still to be merged with the file's daemon.listen. */
  listenOverride: string | undefined;
  leaveRunning: boolean | undefined;
  /**
   * BOTWARDEN_SCOPE: hunt only processes whose environment carries the same BOTWARDEN_SCOPE (and
   * give it to every bot). For independent daemons on one machine that must not take each other's
   * bots for copies, such as test runs. Unset (the default): every process on the machine is looked at.
   */
  scope: string | undefined;
}

type Env = Record<string, string | undefined>;

export const DEFAULT_LISTEN = '127.0.0.1:7070';

export function resolveSettings(flags: Flags, env: Env, cwd = process.cwd()): Settings {
  const pick = (flag: string | undefined, envName: string, def: string) => flag ?? nonEmpty(env[envName]) ?? def;
  return {
    configPath: path.resolve(cwd, pick(flags.config, 'BOTWARDEN_CONFIG', 'config/botwarden.yaml')),
    dataDir: path.resolve(cwd, pick(flags.dataDir, 'BOTWARDEN_DATA_DIR', 'data')),
    envFile: path.resolve(cwd, pick(flags.envFile, 'BOTWARDEN_ENV_FILE', '.env')),
    logLevel: nonEmpty(env.BOTWARDEN_LOG_LEVEL) ?? 'info',
    token: nonEmpty(env.BOTWARDEN_TOKEN),
    listenOverride: flags.listen ?? nonEmpty(env.BOTWARDEN_LISTEN),
    leaveRunning: flags.leaveRunning,
    scope: nonEmpty(env.BOTWARDEN_SCOPE),
  };
}

/** The address to listen on: flag/env override, else the file, else the default. */
export function effectiveListen(settings: Pick<Settings, 'listenOverride'>, config: Config | null): ListenAddress {
  return parseListen(settings.listenOverride ?? config?.daemon.listen ?? DEFAULT_LISTEN);
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s === '' ? undefined : s;
}
