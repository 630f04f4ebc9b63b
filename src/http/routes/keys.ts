import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { errorResponses } from '../schemas.js';
import type { ServerDeps } from '../deps.js';

export const KeyView = Type.Object({
  id: Type.String(),
  state: Type.Union([Type.Literal('free'), Type.Literal('leased'), Type.Literal('cooling'), Type.Literal('missing')]),
  account: Type.Union([Type.String(), Type.Null()]),
  cooldownUntil: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  nonceErrors: Type.Integer(),
});

export function keyRoutes(deps: ServerDeps): FastifyPluginAsyncTypebox {
  return async (app) => {
    // Ids and states only: the response schema has no room for a secret.
    app.get(
      '/keys',
      { schema: { tags: ['keys'], response: { 200: Type.Object({ keys: Type.Array(KeyView) }), ...errorResponses({ 401: ['UNAUTHORIZED'] }) } } },
      async () => ({ keys: await deps.keys.list() }),
    );
  };
}
