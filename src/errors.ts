/**
 * Every error the daemon answers with, in one place (the fastify core model:
 * a stable `code`, an HTTP status, a message for people). Routes and the HTTP
 * adapter never invent codes of their own: `ErrorCode` is closed.
 */
export const ERROR_CODES = {
  BAD_REQUEST: 400,
  INVALID_ACCOUNT_ID: 400,
  INVALID_QUERY: 400,
  INVALID_BODY: 400,
  INVALID_CONFIG: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  UNKNOWN_ACCOUNT: 404,
  UNKNOWN_ALERT: 404,
  UNKNOWN_KEY: 404,
  ACCOUNT_LOCKED: 409,
  ACCOUNT_RUNNING: 409,
  DUPLICATE_RUNNING: 409,
  NO_FREE_KEY: 409,
  BODY_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  MISDIRECTED_REQUEST: 421,
  TOO_MANY_REQUESTS: 429,
  SPAWN_FAILED: 500,
  INTERNAL_ERROR: 500,
  LOCK_BACKEND_UNAVAILABLE: 503,
  SHUTTING_DOWN: 503,
  STORAGE_FULL: 507,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class BotwardenError extends Error {
  readonly statusCode: number;

  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Extra facts that go into the response body (never secrets). */
    readonly details: Record<string, unknown> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'BotwardenError';
    this.statusCode = ERROR_CODES[code];
  }
}

/** Thrown by a lock backend that cannot be used (database down, timeout): the only source of 503 LOCK_BACKEND_UNAVAILABLE. */
export class LockBackendError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LockBackendError';
  }
}

export interface LockFacts {
  holder: string;
  /** The holder daemon's name and host (PostgreSQL mode; on one machine the holder says it all). */
  host?: string | undefined;
  since: string;
  token: number;
  pid: number | null;
}

export const Errors = {
  invalidAccountId: (id: string) =>
    new BotwardenError('INVALID_ACCOUNT_ID', `Invalid account id ${JSON.stringify(id)}: use 1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit.`),
  unknownAccount: (id: string) => new BotwardenError('UNKNOWN_ACCOUNT', `Unknown account '${id}': it is not in the config file.`),
  unknownKey: (id: string) => new BotwardenError('UNKNOWN_KEY', `Unknown API key '${id}': it is not in the config's keys section.`),
  unknownAlert: (name: string) => new BotwardenError('UNKNOWN_ALERT', `Unknown alert target '${name}': it is not in the config's alerts section.`),
  accountLocked: (name: string, brokerUsername: string, lock: LockFacts | null) => {
    const where = lock?.host ? ` on daemon ${lock.holder} (host ${lock.host})` : '';
    const started = lock ? `Started: ${lock.since}${where}${lock.pid !== null ? ` (pid ${lock.pid})` : ''}. ` : '';
    return new BotwardenError(
      'ACCOUNT_LOCKED',
      `Account '${name}' is already being traded! Broker: ${brokerUsername || '(unknown)'}. ${started}` +
        `You cannot run two bots on the same account: stop the other instance first, or choose another account.`,
      { lock },
    );
  },
  accountRunning: (accounts: string[]) =>
    new BotwardenError(
      'ACCOUNT_RUNNING',
      `The new config drops or renames ${accounts.length === 1 ? 'an account whose bot runs' : 'accounts whose bots run'}: ${accounts.map((a) => `'${a}'`).join(', ')}. ` +
        'A bot must not lose its lock and key while it trades: stop it first, then reload. Nothing was changed.',
      { accounts },
    ),
  duplicateRunning: (account: string, pids: number[]) =>
    new BotwardenError('DUPLICATE_RUNNING', `Account '${account}' has copies running that botwarden did not start (pid ${pids.join(', ')}); its duplicates policy is 'report', so nothing was started. Stop them first.`, { pids }),
  noFreeKey: (account: string, pool: string[]) =>
    new BotwardenError('NO_FREE_KEY', `No free API key for account '${account}': every key of its pool (${pool.join(', ')}) is leased, cooling down or missing.`),
  lockBackendUnavailable: (detail: string, cause?: unknown) =>
    new BotwardenError('LOCK_BACKEND_UNAVAILABLE', `The lock backend is unavailable: ${detail}. Nothing was started.`, {}, { cause }),
  storageFull: (detail: string, cause?: unknown) =>
    new BotwardenError('STORAGE_FULL', `The data dir's disk is full (${detail}); nothing was started. Free some space: running bots keep running.`, {}, { cause }),
  spawnFailed: (account: string, detail: string, cause?: unknown) =>
    new BotwardenError('SPAWN_FAILED', `Could not start the bot of account '${account}': ${detail}`, {}, { cause }),
  shuttingDown: () => new BotwardenError('SHUTTING_DOWN', 'The daemon is shutting down; nothing new is started.'),
  invalidConfig: (problems: string[]) => new BotwardenError('INVALID_CONFIG', `The config is invalid; nothing was changed:\n${problems.join('\n')}`, { problems }),
  unauthorized: () => new BotwardenError('UNAUTHORIZED', 'Missing or wrong bearer token (see <data-dir>/api-token or BOTWARDEN_TOKEN).'),
  forbidden: (name: string, role: string, needs: string, what: string) =>
    new BotwardenError('FORBIDDEN', `Token '${name}' has role ${role}; ${what} needs role ${needs}${needs === 'admin' ? '' : ' or above'}.`, { role, needs }),
  tooManyRequests: (retryAfterSeconds: number) =>
    new BotwardenError('TOO_MANY_REQUESTS', `Too many failed authentications from this address; try again in ${retryAfterSeconds} s.`, { retryAfterSeconds }),
  misdirected: (host: string) =>
    new BotwardenError('MISDIRECTED_REQUEST', `Host '${host}' is not served here (DNS-rebinding guard); use the listen address or localhost, or add it to daemon.allowedHosts.`),
  badRequest: (message: string) => new BotwardenError('BAD_REQUEST', message),
  invalidQuery: (message: string) => new BotwardenError('INVALID_QUERY', message),
  invalidBody: (message: string) => new BotwardenError('INVALID_BODY', message),
  notFound: (what: string) => new BotwardenError('NOT_FOUND', what),
  internal: () => new BotwardenError('INTERNAL_ERROR', 'Internal error; see the daemon log.'),
} as const;

export function isBotwardenError(e: unknown): e is BotwardenError {
  return e instanceof BotwardenError;
}

/** SQLite's and the OS's ways of saying the disk is full. */
export function isDiskFull(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'SQLITE_FULL' || code === 'ENOSPC' || code === 'EDQUOT';
}
