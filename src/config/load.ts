/**
 * Reading and validating the config. Every problem is collected and reported
 * with its path in the file; nothing half-valid is ever returned.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Value } from '@sinclair/typebox/value';
import { parseDocument } from 'yaml';
import { NONCE_PRESETS } from '../output/patterns.js';
import { ACCOUNT_ID_RE, AccountConfig, ConfigFile, type Account, type Config } from './schema.js';

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(source: string, problems: string[]) {
    super(`Invalid config ${source}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Reads and validates a YAML config file. Throws ConfigError listing every problem. */
export function loadConfigFile(file: string): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [`cannot read the file: ${(err as Error).message}`]);
  }
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(file, doc.errors.map((e) => `YAML: ${e.message.split('\n')[0]}`));
  }
  return parseConfig(doc.toJS() ?? {}, { source: file, baseDir: path.dirname(path.resolve(file)) });
}

/** Validates a config object (the injectable source: tests pass objects). */
export function parseConfig(raw: unknown, opts: { source?: string | null; baseDir: string }): Config {
  const source = opts.source ?? null;
  const where = source ?? 'object';
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(where, ['/: the config must be a mapping with daemon, keys and accounts']);
  }
  const value = Value.Default(ConfigFile, structuredClone(raw)) as { accounts?: unknown };
  // Value.Default does not descend into Record values: fill each account's defaults here.
  if (value.accounts && typeof value.accounts === 'object' && !Array.isArray(value.accounts)) {
    const accs = value.accounts as Record<string, unknown>;
    for (const id of Object.keys(accs)) accs[id] = Value.Default(AccountConfig, accs[id]);
  }
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const e of Value.Errors(ConfigFile, value)) {
    const at = e.path || '/';
    if (seen.has(at)) continue; // the first (most specific) problem per path is enough
    seen.add(at);
    problems.push(`${at}: ${e.message}${describeValue(e.value)}`);
  }
  // Semantic checks run even when the schema found problems, so one run lists everything.
  const file = value as ConfigFile;
  const accounts = new Map<string, Account>();
  const keyIds = isObject(file.keys) ? file.keys : {};
  for (const [id, acc] of Object.entries(isObject(file.accounts) ? file.accounts : {})) {
    const at = `/accounts/${id}`;
    if (!ACCOUNT_ID_RE.test(id)) problems.push(`${at}: account id must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`);
    if (!isObject(acc)) continue;
    if (typeof acc.match === 'string') {
      try {
        new RegExp(acc.match);
      } catch (err) {
        problems.push(`${at}/match: not a valid regular expression (${(err as Error).message})`);
      }
    }
    const patterns: unknown = isObject(acc.nonceErrors) ? acc.nonceErrors.patterns : undefined;
    for (const [i, spec] of (Array.isArray(patterns) ? patterns : []).entries()) {
      if (typeof spec !== 'string' || spec in NONCE_PRESETS) continue;
      try {
        new RegExp(spec);
      } catch (err) {
        problems.push(`${at}/nonceErrors/patterns/${i}: neither a preset (${Object.keys(NONCE_PRESETS).join(', ')}) nor a valid regular expression (${(err as Error).message})`);
      }
    }
    const r = acc.restart;
    if (isObject(r) && typeof r.maxBackoffMs === 'number' && typeof r.backoffMs === 'number' && r.maxBackoffMs < r.backoffMs) {
      problems.push(`${at}/restart/maxBackoffMs: must be >= backoffMs (${r.backoffMs})`);
    }
    const pool: unknown = isObject(acc.keys) ? acc.keys.pool : undefined;
    for (const [i, keyId] of (Array.isArray(pool) ? pool : []).entries()) {
      if (typeof keyId === 'string' && !(keyId in keyIds)) problems.push(`${at}/keys/pool/${i}: unknown key '${keyId}' (not in keys)`);
    }
    for (const name of Object.keys(isObject(acc.env) ? acc.env : {})) {
      if (name.startsWith('BOTWARDEN_')) problems.push(`${at}/env/${name}: BOTWARDEN_* variables are set by the daemon`);
    }
    if (problems.length === 0) {
      const { name, ...rest } = acc;
      accounts.set(id, { ...rest, id, name: name ?? id, cwd: path.resolve(opts.baseDir, acc.cwd) });
    }
  }
  if (isObject(file.lock) && file.lock.backend === 'postgres') {
    // Never fall back silently to local locks when the operator asked for shared ones.
    problems.push('/lock/backend: the postgres lease backend (several machines) is not available in this version; remove `lock` to use local SQLite locks');
  }
  if (isObject(file.daemon) && typeof file.daemon.listen === 'string') {
    try {
      parseListen(file.daemon.listen);
    } catch (err) {
      problems.push(`/daemon/listen: ${(err as Error).message}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(where, problems);
  return { daemon: file.daemon, keys: file.keys, accounts, source };
}

export interface ListenAddress {
  host: string;
  port: number;
}

/** `HOST:PORT`, `[::1]:PORT` or `:PORT`. */
export function parseListen(s: string): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(s.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) throw new Error(`expected HOST:PORT, got ${JSON.stringify(s)}`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

function describeValue(v: unknown): string {
  if (v === undefined) return '';
  const s = JSON.stringify(v);
  return s !== undefined && s.length <= 60 ? ` (got ${s})` : '';
}

function isObject(v: unknown): v is Record<string, any> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
