/**
 * Reading and validating the config. Every problem is collected and reported
 * with its path in the file; nothing half-valid is ever returned.
 */
import { Cron } from 'croner';
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { Value } from '@sinclair/typebox/value';
import { parseDocument } from 'yaml';
import { ACCOUNT_ID_RE, AccountConfig, AlertTarget, ConfigFile, FENCE_KILL_MS, FENCE_SLACK_MS, NONCE_PRESET_NAMES, ROLES, type Account, type Config, type RoleToken } from './schema.js';

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(source: string, problems: string[]) {
    super(`Invalid config ${source}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Reads and validates a YAML config file. Throws ConfigError listing every problem. */
export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): Config {
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
  return parseConfig(doc.toJS() ?? {}, { source: file, baseDir: path.dirname(path.resolve(file)), env });
}

/** The checks of one account the schema cannot make (regular expressions, cron, cross references). */
function accountProblems(at: string, acc: Record<string, unknown>, keyIds: object, keyVars: Set<string>, tokenVars: Set<string>): string[] {
  const out: string[] = [];
  if (typeof acc.match === 'string') {
    try {
      new RegExp(acc.match);
    } catch (err) {
      out.push(`${at}/match: not a valid regular expression (${(err as Error).message})`);
    }
  }
  const patterns: unknown = isObject(acc.nonceErrors) ? acc.nonceErrors.patterns : undefined;
  for (const [i, spec] of (Array.isArray(patterns) ? patterns : []).entries()) {
    if (typeof spec !== 'string' || (NONCE_PRESET_NAMES as readonly string[]).includes(spec)) continue;
    try {
      new RegExp(spec);
    } catch (err) {
      out.push(`${at}/nonceErrors/patterns/${i}: neither a preset (${NONCE_PRESET_NAMES.join(', ')}) nor a valid regular expression (${(err as Error).message})`);
    }
  }
  const r = acc.restart;
  if (isObject(r) && typeof r.maxBackoffMs === 'number' && typeof r.backoffMs === 'number' && r.maxBackoffMs < r.backoffMs) {
    out.push(`${at}/restart/maxBackoffMs: must be >= backoffMs (${r.backoffMs})`);
  }
  if (isObject(r) && typeof r.schedule === 'string') {
    const bad = cronProblem(r.schedule);
    if (bad) out.push(`${at}/restart/schedule: not a cron expression (${bad})`);
  }
  const lv = acc.liveness;
  if (isObject(lv) && lv.watchdogMs !== undefined && lv.notify !== true) out.push(`${at}/liveness/watchdogMs: needs notify: true (WATCHDOG=1 comes over NOTIFY_SOCKET)`);
  const pool: unknown = isObject(acc.keys) ? acc.keys.pool : undefined;
  for (const [i, keyId] of (Array.isArray(pool) ? pool : []).entries()) {
    if (typeof keyId === 'string' && !(keyId in keyIds)) out.push(`${at}/keys/pool/${i}: unknown key '${keyId}' (not in keys)`);
  }
  for (const name of Object.keys(isObject(acc.env) ? acc.env : {})) {
    if (name.startsWith('BOTWARDEN_')) out.push(`${at}/env/${name}: BOTWARDEN_* variables are set by the daemon`);
  }
  for (const [i, name] of (Array.isArray(acc.passEnv) ? acc.passEnv : []).entries()) {
    if (typeof name !== 'string') continue;
    if (name.startsWith('BOTWARDEN_')) out.push(`${at}/passEnv/${i}: BOTWARDEN_* variables are never passed to a bot`);
    else if (keyVars.has(name)) out.push(`${at}/passEnv/${i}: ${name} is a key variable; a bot gets only the pair it leased, under keys.envKey / keys.envSecret`);
    else if (tokenVars.has(name)) out.push(`${at}/passEnv/${i}: ${name} holds an API token (auth.tokens); it is never passed to a bot`);
  }
  return out;
}

/** Validates a config object (the injectable source: tests pass objects). */
export function parseConfig(raw: unknown, opts: { source?: string | null; baseDir: string; env?: NodeJS.ProcessEnv }): Config {
  const source = opts.source ?? null;
  const where = source ?? 'object';
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(where, ['/: the config must be a mapping with daemon, keys and accounts']);
  }
  const problems: string[] = [];
  const env = opts.env ?? process.env;
  const refs: { at: string; name: string }[] = [];
  const substituted = substitute(structuredClone(raw), env, '', problems, refs);
  const value = Value.Default(ConfigFile, substituted) as { accounts?: unknown; alerts?: unknown };
  // Value.Default does not descend into Record values: fill each account's defaults here.
  if (value.accounts && typeof value.accounts === 'object' && !Array.isArray(value.accounts)) {
    const accs = value.accounts as Record<string, unknown>;
    for (const id of Object.keys(accs)) accs[id] = Value.Default(AccountConfig, accs[id]);
  }
  if (value.alerts && typeof value.alerts === 'object' && !Array.isArray(value.alerts)) {
    const al = value.alerts as Record<string, unknown>;
    for (const id of Object.keys(al)) al[id] = Value.Default(AlertTarget, al[id]);
  }
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
  const keyVars = keyVariables(file);
  const tokenVars = new Set(Object.values(isObject(file.auth) && isObject(file.auth.tokens) ? file.auth.tokens : {}).flatMap((t) => (isObject(t) && typeof t.tokenEnv === 'string' ? [t.tokenEnv] : [])));
  for (const [id, acc] of Object.entries(isObject(file.accounts) ? file.accounts : {})) {
    const at = `/accounts/${id}`;
    if (!ACCOUNT_ID_RE.test(id)) problems.push(`${at}: account id must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`);
    if (!isObject(acc)) continue;
    problems.push(...accountProblems(at, acc, keyIds, keyVars, tokenVars));
    const cwd = typeof acc.cwd === 'string' ? path.resolve(opts.baseDir, acc.cwd) : null;
    if (cwd !== null) problems.push(...runnableProblems(at, cwd, acc.command, isObject(acc.env) && typeof acc.env.PATH === 'string' ? acc.env.PATH : env.PATH));
    if (problems.length === 0 && cwd !== null) {
      const { name, ...rest } = acc;
      const mine = (r: { at: string }) => r.at.startsWith(`${at}/env/`) || r.at.startsWith(`${at}/command/`);
      const envRefs = [...new Set(refs.filter(mine).map((r) => r.name))];
      accounts.set(id, { ...rest, id, name: name ?? id, cwd, envRefs });
    }
  }
  if (isObject(file.lock) && file.lock.backend === 'postgres') {
    // Never fall back silently to local locks when the operator asked for shared ones.
    if (!file.lock.url) problems.push('/lock/url: the postgres backend needs a connection URL (e.g. url: ${BOTWARDEN_PG_URL})');
    problems.push(...fenceBudgetProblems(file));
  }
  for (const [name, t] of Object.entries(isObject(file.alerts) ? file.alerts : {})) {
    if (isObject(t) && t.format === 'telegram' && !t.chatId) problems.push(`/alerts/${name}/chatId: telegram needs the chat id`);
    if (isObject(t) && typeof t.url === 'string' && !/^https?:\/\//.test(t.url)) problems.push(`/alerts/${name}/url: must be an http(s) URL`);
  }
  const roleTokens = authProblems(file, env, problems);
  if (isObject(file.daemon) && typeof file.daemon.listen === 'string') {
    try {
      parseListen(file.daemon.listen);
    } catch (err) {
      problems.push(`/daemon/listen: ${(err as Error).message}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(where, problems);
  return { daemon: file.daemon, lock: file.lock, clock: file.clock, alerts: file.alerts, keys: file.keys, accounts, auth: { tokens: roleTokens }, source };
}

/** The shortest token auth.tokens accepts: a bearer token that guards bot controls must not be guessable. */
export const MIN_TOKEN_LENGTH = 16;

/**
 * SPEC 18: every named token's value is set (the environment or the .env file), 16 printable
 * characters or more, and its own (two names with one token could not be told apart in the audit
 * trail). The values are never part of a problem's text.
 */
function authProblems(file: ConfigFile, env: NodeJS.ProcessEnv, problems: string[]): RoleToken[] {
  const out: RoleToken[] = [];
  const byValue = new Map<string, string>();
  for (const [name, t] of Object.entries(isObject(file.auth) && isObject(file.auth.tokens) ? file.auth.tokens : {})) {
    const at = `/auth/tokens/${name}`;
    if (name === 'api-token') problems.push(`${at}: 'api-token' is the name of the generated data/api-token (admin); choose another`);
    if (!isObject(t) || typeof t.tokenEnv !== 'string') continue;
    const value = env[t.tokenEnv];
    if (value === undefined || value === '') {
      problems.push(`${at}/tokenEnv: ${t.tokenEnv} is not set in the environment or the env file`);
      continue;
    }
    if (value.length < MIN_TOKEN_LENGTH) problems.push(`${at}/tokenEnv: the token in ${t.tokenEnv} has ${value.length} characters; use ${MIN_TOKEN_LENGTH} or more (e.g. openssl rand -base64 24)`);
    else if (!/^[\x21-\x7e]+$/.test(value)) problems.push(`${at}/tokenEnv: the token in ${t.tokenEnv} must be printable ASCII without spaces (it travels in an Authorization header)`);
    const twin = byValue.get(value);
    if (twin !== undefined) problems.push(`${at}/tokenEnv: the same token as /auth/tokens/${twin}; give each name its own, or the audit trail cannot tell them apart`);
    byValue.set(value, name);
    if ((ROLES as readonly unknown[]).includes(t.role)) out.push({ name, role: t.role, tokenEnv: t.tokenEnv, token: value });
  }
  return out;
}

/**
 * PostgreSQL mode: a daemon that cannot renew must stop its bot before the lease can expire and be
 * granted elsewhere. So graceMs + kill time + slack + 2 x renewMs must stay below leaseMs.
 */
function fenceBudgetProblems(file: ConfigFile): string[] {
  const { leaseMs, renewMs } = file.lock;
  const out: string[] = [];
  for (const [id, acc] of Object.entries(isObject(file.accounts) ? file.accounts : {})) {
    const grace = isObject(acc) && isObject(acc.stop) && typeof acc.stop.graceMs === 'number' ? acc.stop.graceMs : 30000;
    const need = grace + FENCE_KILL_MS + FENCE_SLACK_MS + 2 * renewMs;
    if (need >= leaseMs) {
      out.push(
        `/accounts/${id}/stop/graceMs: in postgres mode the stop budget must fit in the lease: graceMs ${grace} + kill ${FENCE_KILL_MS} + slack ${FENCE_SLACK_MS} + 2 x renewMs ${renewMs} = ${need} ms >= leaseMs ${leaseMs}; lower graceMs or renewMs, or raise lock.leaseMs`,
      );
    }
  }
  return out;
}

/**
 * The secrets the config itself holds (SPEC 15): every alert target's URL (and its path, where a
 * webhook's secret lives, when 16 characters or more) and chat id, the lock URL and its password (as written and decoded).
 */
export function configSecrets(config: Pick<Config, 'alerts' | 'lock' | 'auth'>): string[] {
  const out: string[] = [];
  // SPEC 18: the named API tokens.
  for (const t of config.auth?.tokens ?? []) out.push(t.token);
  const urlParts = (url: string) => {
    out.push(url);
    try {
      const u = new URL(url);
      if (u.password) out.push(u.password, decodeURIComponent(u.password));
      // The path (+ query) where a webhook keeps its secret; a short one (/hook) is no secret and too common to mask.
      if ((u.pathname + u.search).length >= 16) out.push(u.pathname + u.search);
    } catch {
      // not a URL: the whole string is masked all the same
    }
  };
  for (const t of Object.values(config.alerts)) {
    urlParts(t.url);
    if (t.chatId) out.push(t.chatId);
  }
  if (config.lock.url) urlParts(config.lock.url);
  return out;
}

/** The variable names of every configured key, and of every account's leased pair. */
function keyVariables(file: ConfigFile): Set<string> {
  const out = new Set<string>();
  for (const k of Object.values(isObject(file.keys) ? file.keys : {})) {
    if (isObject(k)) for (const n of [k.keyEnv, k.secretEnv]) if (typeof n === 'string') out.add(n);
  }
  for (const a of Object.values(isObject(file.accounts) ? file.accounts : {})) {
    if (isObject(a) && isObject(a.keys)) for (const n of [a.keys.envKey, a.keys.envSecret]) if (typeof n === 'string') out.add(n);
  }
  return out;
}

/**
 * SPEC 15: `cwd` is an existing directory and `command[0]` an executable file, found the way the
 * spawn will find it: `node` is the daemon's own Node, a name with a slash is relative to cwd, any
 * other name is looked up in PATH (the account's env PATH if it sets one, else the daemon's).
 */
function runnableProblems(at: string, cwd: string, command: unknown, pathVar: string | undefined): string[] {
  let dir: boolean;
  try {
    dir = statSync(cwd).isDirectory();
  } catch {
    return [`${at}/cwd: ${cwd} does not exist`];
  }
  if (!dir) return [`${at}/cwd: ${cwd} is not a directory`];
  const cmd: unknown = Array.isArray(command) ? command[0] : undefined;
  if (typeof cmd !== 'string' || cmd === '' || cmd === 'node') return [];
  if (cmd.includes('/')) {
    const file = path.resolve(cwd, cmd);
    const why = notExecutable(file);
    return why === null ? [] : [`${at}/command/0: ${file} ${why}`];
  }
  for (const d of (pathVar ?? '').split(':')) {
    if (notExecutable(path.resolve(cwd, d || '.', cmd)) === null) return [];
  }
  return [`${at}/command/0: '${cmd}' is not an executable file in any PATH directory (PATH=${pathVar ?? ''})`];
}

/** Why a file cannot be executed, or null when it can. */
function notExecutable(file: string): string | null {
  try {
    if (!statSync(file).isFile()) return 'is not a file';
    accessSync(file, constants.X_OK);
    return null;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : 'is not executable';
  }
}

/** Replaces ${NAME} in every string with the variable's value; a missing one is a problem. Every name is recorded in `refs`. */
function substitute(v: unknown, env: NodeJS.ProcessEnv, at: string, problems: string[], refs: { at: string; name: string }[]): unknown {
  if (typeof v === 'string') {
    return v.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => {
      refs.push({ at, name });
      const value = env[name];
      if (value === undefined) {
        problems.push(`${at || '/'}: \${${name}} is not set in the environment or the env file`);
        return '';
      }
      return value;
    });
  }
  if (Array.isArray(v)) return v.map((x, i) => substitute(x, env, `${at}/${i}`, problems, refs));
  if (isObject(v)) {
    for (const k of Object.keys(v)) v[k] = substitute(v[k], env, `${at}/${k}`, problems, refs);
  }
  return v;
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

/** Null when croner takes the expression (5 fields, or 6 with seconds), else why not. */
function cronProblem(expr: string): string | null {
  try {
    new Cron(expr, { paused: true }).stop();
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}
