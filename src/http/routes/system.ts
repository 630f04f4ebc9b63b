import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Errors } from '../../errors.js';
import type { TokenRegistry } from '../../auth/tokens.js';
import { ROLES } from '../../config/schema.js';
import { bearer } from '../guards.js';
import { errorResponses, Health, Lease } from '../schemas.js';
import type { ServerDeps } from '../deps.js';

export interface SystemRoutesOptions extends Pick<ServerDeps, 'health' | 'reloadConfig' | 'leases'> {
  /** Who a token belongs to: any role sees the whole /health. */
  tokens: Pick<TokenRegistry, 'identify'>;
}

/** Health, config reload, the account leases, and who a token is. */
export const systemRoutes: FastifyPluginAsyncTypebox<SystemRoutesOptions> = async (app, { health, reloadConfig, leases, tokens }) => {
  app.get('/health', { schema: { tags: ['system'], security: [], response: { 200: Health, 503: Health } } }, async (req, reply) => {
    const snap = await health.snapshot();
    const authed = tokens.identify(bearer(req.headers.authorization)) !== null;
    // Without a token: the status and the names (and states) of the checks, nothing else (docs/api.md).
    const anon = { status: snap.status, checks: snap.checks.map(({ name, status }) => ({ name, status })) };
    return reply.status(snap.status === 'failing' ? 503 : 200).send(authed ? snap : anon);
  });

  app.post(
    '/config/reload',
    { schema: { tags: ['system'], response: { 200: Type.Object({ status: Type.Literal('reloaded'), accounts: Type.Array(Type.String()) }), ...errorResponses({ 400: ['INVALID_CONFIG'], 401: ['UNAUTHORIZED'], 409: ['ACCOUNT_RUNNING'] }) } } },
    async () => ({ status: 'reloaded' as const, ...(await reloadConfig()) }),
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
        return { leases: leases().map(({ instanceId: _i, ...l }) => l) };
      } catch (err) {
        throw Errors.lockBackendUnavailable((err as Error).message, err);
      }
    },
  );

  // SPEC 18: who this token is (the dashboard hides what its role may not do).
  app.get(
    '/whoami',
    {
      schema: {
        tags: ['system'],
        response: {
          200: Type.Object({ name: Type.String({ description: "the token's name in auth.tokens; api-token for the generated one" }), role: Type.Union(ROLES.map((r) => Type.Literal(r))) }),
          ...errorResponses({ 401: ['UNAUTHORIZED'], 429: ['TOO_MANY_REQUESTS'] }),
        },
      },
    },
    async (req) => ({ name: req.identity?.name ?? '', role: req.identity?.role ?? 'viewer' }),
  );
};
