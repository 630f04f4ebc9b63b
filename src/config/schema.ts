/**
 * The config file's schema, in TypeBox so the same library
 * validates config, routes and builds the OpenAPI document. Defaults live in
 * the schema: `Value.Default` fills them in before validation.
 */
import { Type, type Static } from '@sinclair/typebox';

/** The nonce-error presets an account may name (their patterns live in output/patterns.ts). */
export const NONCE_PRESET_NAMES = ['kraken', 'binance', 'bitfinex', 'kucoin', 'coinbase', 'bybit', 'okx', 'ccxt'] as const;
export type NoncePresetName = (typeof NONCE_PRESET_NAMES)[number];

export const ACCOUNT_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$';
export const ACCOUNT_ID_RE = new RegExp(ACCOUNT_ID_PATTERN);
const ENV_NAME = '^[A-Za-z_][A-Za-z0-9_]*$';

export const STOP_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGKILL'] as const;
export const StopSignal = Type.Union(STOP_SIGNALS.map((s) => Type.Literal(s)));

const Ms = (def: number, min = 0) => Type.Integer({ minimum: min, default: def });

export const KeyRef = Type.Object(
  {
    keyEnv: Type.String({ pattern: ENV_NAME }),
    secretEnv: Type.String({ pattern: ENV_NAME }),
  },
  { additionalProperties: false },
);

export const AccountConfig = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    broker: Type.String({ default: '' }),
    brokerUsername: Type.String({ default: '' }),
    command: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
    cwd: Type.String({ default: '.' }),
    env: Type.Record(Type.String({ pattern: ENV_NAME }), Type.String(), { default: {} }),
    /** Variables of the .env file this account's bot gets as they are (besides the ones its env and command name as ${NAME}). */
    passEnv: Type.Optional(Type.Array(Type.String({ pattern: ENV_NAME }))),
    match: Type.Optional(Type.String({ minLength: 1 })),
    duplicates: Type.Union([Type.Literal('kill'), Type.Literal('report')], { default: 'kill' }),
    startMs: Ms(1000),
    stop: Type.Object(
      {
        signal: Type.Union([StopSignal], { default: 'SIGTERM' }),
        graceMs: Ms(30000),
        /** Run before the stop signal of a requested stop, restart, rotation or schedule (SPEC 16). */
        before: Type.Optional(
          Type.Object({ command: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }), timeoutMs: Ms(10000) }, { additionalProperties: false }),
        ),
      },
      { additionalProperties: false, default: {} },
    ),
    liveness: Type.Optional(
      Type.Object(
        {
          graceMs: Ms(60000),
          silenceMs: Type.Optional(Type.Integer({ minimum: 100 })),
          heartbeatFile: Type.Optional(Type.String({ minLength: 1 })),
          staleMs: Ms(120000, 100),
          http: Type.Optional(
            Type.Object(
              { url: Type.String({ pattern: '^https?://' }), intervalMs: Ms(10000, 100), timeoutMs: Ms(3000, 1), failures: Type.Integer({ minimum: 1, default: 3 }) },
              { additionalProperties: false },
            ),
          ),
          notify: Type.Boolean({ default: false }),
          watchdogMs: Type.Optional(Type.Integer({ minimum: 100 })),
          action: Type.Union([Type.Literal('restart'), Type.Literal('alert')], { default: 'restart' }),
        },
        { additionalProperties: false },
      ),
    ),
    limits: Type.Optional(
      Type.Object(
        {
          memoryMB: Type.Optional(Type.Integer({ minimum: 1 })),
          cpuPercent: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
          forMs: Ms(60000),
          action: Type.Union([Type.Literal('restart'), Type.Literal('alert')], { default: 'restart' }),
        },
        { additionalProperties: false },
      ),
    ),
    restart: Type.Object(
      {
        policy: Type.Union([Type.Literal('never'), Type.Literal('on-failure'), Type.Literal('always')], { default: 'on-failure' }),
        maxRestarts: Type.Integer({ minimum: 0, default: 5 }),
        backoffMs: Ms(1000),
        maxBackoffMs: Ms(30000),
        /** A cron expression (5 fields, or 6 with seconds), local time: restart the running bot then. */
        schedule: Type.Optional(Type.String({ minLength: 1 })),
        jitterMs: Ms(0),
      },
      { additionalProperties: false, default: {} },
    ),
    keys: Type.Optional(
      Type.Object(
        {
          pool: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
          envKey: Type.String({ pattern: ENV_NAME }),
          envSecret: Type.String({ pattern: ENV_NAME }),
        },
        { additionalProperties: false },
      ),
    ),
    nonceErrors: Type.Object(
      {
        patterns: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
        rotateAfter: Type.Integer({ minimum: 1, default: 3 }),
        windowMs: Ms(60000, 1),
        cooldownMs: Ms(900000),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false },
);

export const DaemonConfig = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    listen: Type.Optional(Type.String({ minLength: 1 })),
    minFreeBytes: Type.Integer({ minimum: 0, default: 200 * 1024 * 1024 }),
    scanIntervalMs: Ms(1000, 50),
    healthIntervalMs: Ms(5000, 100),
    /**
     * Bots are forked by the daemon itself until more than this many of its forks run; then by its
     * spawner process, which it starts then (0: from the first bot). docs/config.md says why.
     */
    spawnerAbove: Type.Integer({ minimum: 0, default: 100 }),
    onShutdown: Type.Union([Type.Literal('stop-bots'), Type.Literal('leave-running')], { default: 'stop-bots' }),
    allowedHosts: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
    /** Behind a reverse proxy (SPEC 18): the client address is the one the proxy put last in X-Forwarded-For. */
    trustProxy: Type.Boolean({ default: false }),
    logs: Type.Object(
      { maxBytes: Type.Integer({ minimum: 4096, default: 10 * 1024 * 1024 }), files: Type.Integer({ minimum: 1, maximum: 100, default: 5 }) },
      { additionalProperties: false, default: {} },
    ),
    events: Type.Object(
      { retentionDays: Type.Number({ exclusiveMinimum: 0, default: 7 }), maxRows: Type.Integer({ minimum: 100, default: 100000 }) },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false, default: {} },
);

/** Where account locks and key leases live: SQLite (one machine) or PostgreSQL leases (several). */
export const LockConfig = Type.Object(
  {
    backend: Type.Union([Type.Literal('sqlite'), Type.Literal('postgres')], { default: 'sqlite' }),
    url: Type.Optional(Type.String({ minLength: 1 })),
    leaseMs: Ms(15000, 1000),
    renewMs: Ms(3000, 100),
  },
  { additionalProperties: false, default: {} },
);

/** Measuring this machine's clock against the exchanges' (SPEC 17). */
export const ClockConfig = Type.Object(
  {
    checkIntervalMs: Ms(600000, 1000),
    maxOffsetMs: Ms(500, 1),
    /** broker -> server-time URL; built-in defaults for the preset exchanges (monitor/clock.ts). */
    sources: Type.Record(Type.String({ minLength: 1 }), Type.String({ pattern: '^https?://' }), { default: {} }),
  },
  { additionalProperties: false, default: {} },
);

export const ALERT_FORMATS = ['generic', 'slack', 'discord', 'telegram', 'ntfy'] as const;

export const AlertTarget = Type.Object(
  {
    format: Type.Union(ALERT_FORMATS.map((f) => Type.Literal(f))),
    url: Type.String({ minLength: 1 }),
    chatId: Type.Optional(Type.String({ minLength: 1 })),
    events: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
    accounts: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
    minIntervalMs: Ms(60000),
  },
  { additionalProperties: false },
);
export type AlertTarget = Static<typeof AlertTarget>;

/** Who may do what over HTTP (SPEC 18), lowest first: each role may do all that the ones before it may. */
export const ROLES = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** Named API tokens with a role; the token itself comes from the environment or the .env file. */
export const AuthConfig = Type.Object(
  {
    tokens: Type.Record(
      Type.String({ pattern: ACCOUNT_ID_PATTERN }),
      Type.Object(
        { role: Type.Union(ROLES.map((r) => Type.Literal(r))), tokenEnv: Type.String({ pattern: ENV_NAME }) },
        { additionalProperties: false },
      ),
      { default: {} },
    ),
  },
  { additionalProperties: false, default: {} },
);

/** A named token as the daemon uses it: its value read from the environment at load. */
export interface RoleToken {
  name: string;
  role: Role;
  tokenEnv: string;
  token: string;
}

/** Kill time and slack of the fence budget (docs/config.md): what a stop needs beyond its grace. */
export const FENCE_KILL_MS = 2000;
export const FENCE_SLACK_MS = 1000;

export const ConfigFile = Type.Object(
  {
    daemon: DaemonConfig,
    lock: LockConfig,
    clock: ClockConfig,
    keys: Type.Record(Type.String({ pattern: ACCOUNT_ID_PATTERN }), KeyRef, { default: {} }),
    accounts: Type.Record(Type.String(), AccountConfig, { default: {} }),
    alerts: Type.Record(Type.String({ pattern: ACCOUNT_ID_PATTERN }), AlertTarget, { default: {} }),
    auth: AuthConfig,
  },
  { additionalProperties: false },
);

export type AccountConfig = Static<typeof AccountConfig>;
export type DaemonConfig = Static<typeof DaemonConfig>;
export type ConfigFile = Static<typeof ConfigFile>;
export type StopSignal = (typeof STOP_SIGNALS)[number];

/** An account as the supervisor uses it: id, display name and absolute cwd resolved. */
export interface Account extends Omit<AccountConfig, 'name'> {
  id: string;
  name: string;
  /** The variables its `env` and `command` name as ${NAME} (SPEC 15: they reach its bot). */
  envRefs?: string[];
}

export interface Config {
  daemon: DaemonConfig;
  lock: Static<typeof LockConfig>;
  clock: Static<typeof ClockConfig>;
  alerts: Record<string, AlertTarget>;
  keys: ConfigFile['keys'];
  accounts: Map<string, Account>;
  /** SPEC 18: named tokens and their roles (the generated data/api-token is admin besides these). */
  auth?: { tokens: RoleToken[] };
  /** The file it came from, or null when passed as an object (tests). */
  source: string | null;
}

/** The exchange an account trades on: its `broker`, lowercased (the clock is measured only for those). */
export function brokerOf(a: { broker: string }): string | null {
  return a.broker ? a.broker.toLowerCase() : null;
}
