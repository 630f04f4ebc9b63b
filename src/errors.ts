/**
 * Every error the daemon answers with, in one place (the fastify core model:
 * a stable `code`, an HTTP status, a message for people). Routes never invent
 * codes of their own.
 */
export class BotwardenError extends Error {
  readonly code: string;
  readonly statusCode: number;
  /** Extra facts that go into the response body (never secrets). */
  readonly details: Record<string, unknown>;

  constructor(code: string, statusCode: number, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    // A refusal (4xx) is an answer, not a bug: skip the stack capture, which costs more than the
    // rest of a 409 under 200 racing requests. Server errors keep their stacks.
    const limit = Error.stackTraceLimit;
    if (statusCode < 500) Error.stackTraceLimit = 0;
    super(message, options);
    Error.stackTraceLimit = limit;
    this.name = 'BotwardenError';
    this.code = code;
    this.statusCode = statusCode;
    this.details = details;
  }
}

export interface LockFacts {
  holder: string;
  since: string;
  token: number;
  pid: number | null;
}

export const Errors = {
  invalidAccountId: (id: string) =>
    new BotwardenError('INVALID_ACCOUNT_ID', 400, `Invalid account id ${JSON.stringify(id)}: use 1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit.`),
  unknownAccount: (id: string) =>
    new BotwardenError('UNKNOWN_ACCOUNT', 404, `Unknown account '${id}': it is not in the config file.`),
  accountLocked: (name: string, brokerUsername: string, lock: LockFacts | null) => {
    const started = lock ? `Started: ${lock.since}${lock.pid !== null ? ` (pid ${lock.pid})` : ''}. ` : '';
    return new BotwardenError(
      'ACCOUNT_LOCKED',
      409,
      `Account '${name}' is already being traded! Broker: ${brokerUsername || '(unknown)'}. ${started}` +
        `You cannot run two bots on the same account: stop the other instance first, or choose another account.`,
      { lock },
    );
  },
  duplicateRunning: (account: string, pids: number[]) =>
    new BotwardenError('DUPLICATE_RUNNING', 409, `Account '${account}' has copies running that botwarden did not start (pid ${pids.join(', ')}); its duplicates policy is 'report', so nothing was started. Stop them first.`, { pids }),
  noFreeKey: (account: string, pool: string[]) =>
    new BotwardenError('NO_FREE_KEY', 409, `No free API key for account '${account}': every key of its pool (${pool.join(', ')}) is leased, cooling down or missing.`),
  lockBackendUnavailable: (detail: string, cause?: unknown) =>
    new BotwardenError('LOCK_BACKEND_UNAVAILABLE', 503, `The lock backend is unavailable: ${detail}. Nothing was started.`, {}, { cause }),
  spawnFailed: (account: string, detail: string, cause?: unknown) =>
    new BotwardenError('SPAWN_FAILED', 500, `Could not start the bot of account '${account}': ${detail}`, {}, { cause }),
  shuttingDown: () => new BotwardenError('SHUTTING_DOWN', 503, 'The daemon is shutting down; nothing new is started.'),
  invalidConfig: (problems: string[]) =>
    new BotwardenError('INVALID_CONFIG', 400, `The config is invalid; nothing was changed:\n${problems.join('\n')}`, { problems }),
  unauthorized: () => new BotwardenError('UNAUTHORIZED', 401, 'Missing or wrong bearer token (see <data-dir>/api-token or BOTWARDEN_TOKEN).'),
  misdirected: (host: string) =>
    new BotwardenError('MISDIRECTED_REQUEST', 421, `Host '${host}' is not served here (DNS-rebinding guard); use the listen address or localhost, or add it to daemon.allowedHosts.`),
  badRequest: (message: string) => new BotwardenError('BAD_REQUEST', 400, message),
  notFound: (what: string) => new BotwardenError('NOT_FOUND', 404, what),
} as const;

export function isBotwardenError(e: unknown): e is BotwardenError {
  return e instanceof BotwardenError;
}
