/** TypeBox schemas shared by the routes and the OpenAPI document. */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { ACCOUNT_ID_PATTERN } from '../config/schema.js';
import { EXIT_CAUSES } from '../db/registry.js';
import { BOT_STATES } from '../supervisor/states.js';

/**
 * T or null, as `type: [T, 'null']` rather than `anyOf`: fastify's serializer handles a type list
 * with a typeof check, but runs an ajv validation per value for each `anyOf`. With 1,000 bots those
 * validations were most of GET /bots.
 */
const OrNull = <T extends TSchema>(t: T) => {
  const plain = JSON.parse(JSON.stringify(t)) as Record<string, unknown>;
  return Type.Unsafe<Static<T> | null>({ ...plain, type: [plain.type, 'null'] });
};

export const AccountParams = Type.Object({
  account: Type.String({ pattern: ACCOUNT_ID_PATTERN, description: 'account id from the config' }),
});

export const LockFacts = Type.Object({
  holder: Type.String(),
  since: Type.String({ format: 'date-time' }),
  token: Type.Integer(),
  pid: OrNull(Type.Integer()),
});

export const Bot = Type.Object(
  {
    account: Type.String(),
    name: Type.String(),
    broker: Type.String(),
    brokerUsername: Type.String(),
    configured: Type.Boolean({ description: 'false: the account left the config while its bot ran; stoppable, never restarted' }),
    state: Type.Unsafe<(typeof BOT_STATES)[number]>({ type: 'string', enum: [...BOT_STATES] }),
    pid: OrNull(Type.Integer()),
    instanceId: OrNull(Type.String()),
    startedAt: OrNull(Type.String({ format: 'date-time' })),
    restarts: Type.Integer(),
    keyId: OrNull(Type.String()),
    lastExit: OrNull(
      Type.Object({
        code: OrNull(Type.Integer()),
        signal: OrNull(Type.String()),
        at: Type.String({ format: 'date-time' }),
        forced: Type.Boolean({ description: 'SIGKILLed after the grace period' }),
        cause: OrNull(
          Type.Unsafe<(typeof EXIT_CAUSES)[number]>({
            type: 'string',
            enum: [...EXIT_CAUSES],
            description: 'exit: by itself; stopped: by botwarden (reason); killed-outside: a signal botwarden did not send; oom: the kernel OOM killer; spawn-failed',
          }),
        ),
        reason: Type.Optional(OrNull(Type.String({ description: 'with cause stopped: the stop reason' }))),
      }),
    ),
    nonceErrors: Type.Object({ inWindow: Type.Integer(), total: Type.Integer() }),
    lock: OrNull(LockFacts),
    status: OrNull(Type.String({ description: "the bot's own STATUS= line over NOTIFY_SOCKET (liveness.notify)" })),
    rssBytes: OrNull(Type.Integer({ description: 'resident memory of the whole process tree, last sample' })),
    cpuPercent: OrNull(Type.Number({ description: 'CPU of the whole tree in percent of one core, between the last two samples' })),
    diagnosis: OrNull(
      Type.Object(
        { cause: Type.String({ description: 'clock, shared-key, key-rejected or unknown' }), at: Type.String({ format: 'date-time' }), evidence: Type.String() },
        { description: 'the last nonce-error diagnosis (SPEC 17)' },
      ),
    ),
  },
  { $id: 'Bot' },
);

export const ErrorBody = Type.Object(
  {
    statusCode: Type.Integer(),
    error: Type.String(),
    code: Type.String(),
    message: Type.String(),
  },
  { additionalProperties: true },
);

/** Error responses for a route's OpenAPI entry, with the stable codes each status can carry. */
export function errorResponses(codes: Record<number, string[]>) {
  const out: Record<number, typeof ErrorBody> = {};
  for (const [status, list] of Object.entries(codes)) {
    out[Number(status)] = Type.Object(ErrorBody.properties, { additionalProperties: true, description: `code: ${list.join(' | ')}` });
  }
  return out;
}

export const StopBody = Type.Union([
  Type.Object(
    {
      graceMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 3_600_000 })),
      force: Type.Optional(Type.Boolean({ description: 'grace 0: SIGKILL now, cutting short any stop under way' })),
    },
    { additionalProperties: false },
  ),
  Type.Null(),
]);

export const LogsQuery = Type.Object(
  {
    lines: Type.Integer({ minimum: 0, maximum: 100_000, default: 100 }),
    token: Type.Optional(Type.String({ maxLength: 512 })),
  },
  { additionalProperties: false },
);

export const EventsQuery = Type.Object({
  since: Type.Optional(Type.Integer({ minimum: 0 })),
  limit: Type.Integer({ minimum: 1, maximum: 10_000, default: 1000 }),
  types: Type.Optional(Type.String({ pattern: '^[a-z._,]*$', maxLength: 500 })),
  account: Type.Optional(Type.String({ pattern: ACCOUNT_ID_PATTERN })),
  token: Type.Optional(Type.String({ maxLength: 512 })),
}, { additionalProperties: false });

export const Event = Type.Object(
  { id: Type.Integer(), type: Type.String(), at: Type.String({ format: 'date-time' }), account: Type.Optional(Type.String()) },
  { additionalProperties: true },
);

export const HealthCheck = Type.Object({
  name: Type.String(),
  status: Type.Union([Type.Literal('ok'), Type.Literal('degraded'), Type.Literal('failing')]),
  detail: Type.Optional(Type.String({ description: 'only with a valid token' })),
});

export const Health = Type.Object(
  {
    status: Type.Union([Type.Literal('ok'), Type.Literal('degraded'), Type.Literal('failing')]),
    version: Type.Optional(Type.String({ description: 'with a token only' })),
    uptimeMs: Type.Optional(Type.Integer({ description: 'with a token only' })),
    bots: Type.Optional(Type.Record(Type.String(), Type.Integer(), { description: 'with a token only' })),
    checks: Type.Optional(Type.Array(HealthCheck)),
  },
  { additionalProperties: true },
);

export const Lease = Type.Object({
  account: Type.String(),
  holder: Type.String({ description: "the holder daemon's daemon.name" }),
  host: Type.String(),
  since: Type.String(),
  expiresAt: Type.String(),
  token: Type.Integer(),
  mine: Type.Boolean(),
});
