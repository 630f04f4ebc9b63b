import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Errors } from '../../errors.js';
import { errorResponses } from '../schemas.js';
import type { KeyPool } from '../../keys/pool.js';
import type { ClockReadings } from '../deps.js';

export const KeyView = Type.Object({
  id: Type.String(),
  state: Type.Union([Type.Literal('free'), Type.Literal('leased'), Type.Literal('cooling'), Type.Literal('rejected'), Type.Literal('missing')]),
  account: Type.Union([Type.String(), Type.Null()]),
  cooldownUntil: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  nonceErrors: Type.Integer(),
});

export interface KeyRoutesOptions {
  keys: KeyPool;
  /** This machine's clock against the exchanges' (SPEC 17); none: no offsets. */
  clock?: ClockReadings | undefined;
}

/** The API keys (ids and states, never a secret), enabling a rejected one, and the clock offsets. */
export const keyRoutes: FastifyPluginAsyncTypebox<KeyRoutesOptions> = async (app, { keys, clock }) => {
  // Ids and states only: the response schema has no room for a secret.
  app.get(
    '/keys',
    { schema: { tags: ['keys'], response: { 200: Type.Object({ keys: Type.Array(KeyView) }), ...errorResponses({ 401: ['UNAUTHORIZED'] }) } } },
    async () => ({ keys: await keys.list() }),
  );

  // SPEC 17: a key the exchange rejected is set aside until an operator says it may be used again.
  app.post(
    '/keys/:id/enable',
    {
      schema: {
        tags: ['keys'],
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }),
        response: { 200: Type.Object({ enabled: Type.Boolean(), key: KeyView }), ...errorResponses({ 401: ['UNAUTHORIZED'], 404: ['UNKNOWN_KEY'] }) },
      },
    },
    async (req) => {
      const r = await keys.enable(req.params.id);
      if (r === 'unknown') throw Errors.unknownKey(req.params.id);
      const key = (await keys.list()).find((k) => k.id === req.params.id)!;
      return { enabled: r === 'enabled', key };
    },
  );

  // SPEC 17: this machine's clock against each exchange its accounts use.
  app.get(
    '/clock',
    {
      schema: {
        tags: ['keys'],
        response: {
          200: Type.Object({
            offsets: Type.Array(
              Type.Object({
                broker: Type.String(),
                offsetMs: Type.Union([Type.Number(), Type.Null()], { description: "the exchange's time minus this machine's (positive: this machine is behind)" }),
                rttMs: Type.Union([Type.Number(), Type.Null()]),
                at: Type.Union([Type.String(), Type.Null()]),
                error: Type.Union([Type.String(), Type.Null()]),
              }),
            ),
            sync: Type.Union([Type.Boolean(), Type.Null()], { description: "this machine's own time sync (timedatectl), null where nothing tells" }),
          }),
          ...errorResponses({ 401: ['UNAUTHORIZED'] }),
        },
      },
    },
    async () => clock?.list() ?? { offsets: [], sync: null },
  );
};
