import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Errors } from '../../errors.js';
import { bearer, tokenChecker } from '../guards.js';
import { errorResponses, Health, Lease } from '../schemas.js';
import type { ServerDeps } from '../deps.js';

export function systemRoutes(deps: ServerDeps): FastifyPluginAsyncTypebox {
  const tokenMatches = tokenChecker(deps.token);
  return async (app) => {
    app.get('/health', { schema: { tags: ['system'], security: [], response: { 200: Health, 503: Health } } }, async (req, reply) => {
      const snap = await deps.health.snapshot();
      const authed = tokenMatches(bearer(req.headers.authorization));
      // Without a token: the status and the names (and states) of the checks, nothing else (docs/api.md).
      const anon = { status: snap.status, checks: snap.checks.map(({ name, status }) => ({ name, status })) };
      return reply.status(snap.status === 'failing' ? 503 : 200).send(authed ? snap : anon);
    });

    app.post(
      '/config/reload',
      { schema: { tags: ['system'], response: { 200: Type.Object({ status: Type.Literal('reloaded'), accounts: Type.Array(Type.String()) }), ...errorResponses({ 400: ['INVALID_CONFIG'], 401: ['UNAUTHORIZED'], 409: ['ACCOUNT_RUNNING'] }) } } },
      async () => ({ status: 'reloaded' as const, ...(await deps.reloadConfig()) }),
    );

    app.get(
      '/leases',
      {
        schema: {
          tags: ['system'],
          response: {
            200: Type.Object({
              leases: Type.Array(Lease),
            }),
            ...errorResponses({ 401: ['UNAUTHORIZED'], 503: ['LOCK_BACKEND_UNAVAILABLE'] }),
          },
        },
      },
      async () => {
        try {
          return { leases: deps.leases().map(({ instanceId: _i, ...l }) => l) };
        } catch (err) {
          throw Errors.lockBackendUnavailable((err as Error).message, err);
        }
      },
    );

    app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  };
}
