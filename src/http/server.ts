/**
 * The HTTP adapter: builds a fastify app around the services it is given.
 * It never listens (main wires and listens) so tests use it on port 0.
 */
import websocket from '@fastify/websocket';
import type { Logger } from 'pino';
import { FailureLimiter } from '../auth/limiter.js';
import { TokenRegistry } from '../auth/tokens.js';
import { createApp, type HttpApp } from './app.js';
import type { ServerDeps } from './deps.js';
import { allowedHostSet } from './guards.js';
import { addReplyHooks, addRequestGuards, addStrictInput, setErrorHandlers } from './hooks.js';
import { openApiRoute } from './openapi.js';
import { apiRoutes, type ApiRoutesOptions } from './routes/index.js';
import { websocketOptions } from './websocket.js';

export type { ServerDeps } from './deps.js';

/** Brute force (SPEC 18): failed authentications per address, logged once per window, not per refused request. */
function failureLimiter(deps: Pick<ServerDeps, 'now'>, logger: Logger): FailureLimiter {
  const limiter: FailureLimiter = new FailureLimiter({
    now: deps.now ?? (() => performance.now()),
    onBlock: (remote, ms) =>
      logger.warn({ remote, failures: limiter.maxFailures, windowMs: limiter.windowMs, retryAfterS: Math.ceil(ms / 1000) }, 'too many failed authentications from one address: refused until its window frees'),
  });
  return limiter;
}

/** Each route group gets its part of the services. */
function routeOptions(deps: ServerDeps, tokens: TokenRegistry): ApiRoutesOptions {
  return {
    supervisor: deps.supervisor,
    events: deps.events,
    keys: deps.keys,
    clock: deps.clock,
    health: deps.health,
    reloadConfig: deps.reloadConfig,
    leases: deps.leases,
    metrics: deps.metrics,
    alerts: deps.alerts,
    tokens,
    mask: deps.mask ?? ((t: string) => t),
  };
}

export async function buildServer(deps: ServerDeps): Promise<HttpApp> {
  const app = createApp(deps);
  const tokens = new TokenRegistry(deps.token, deps.roleTokens);
  let closing = false;
  addRequestGuards(app, {
    hosts: allowedHostSet(deps.listenHost, deps.allowedHosts),
    tokens,
    limiter: failureLimiter(deps, deps.logger.child({ module: 'http' })),
    closing: () => closing,
  });
  addStrictInput(app);
  const api = routeOptions(deps, tokens);
  addReplyHooks(app, deps.events, api.mask);
  setErrorHandlers(app);
  await app.register(websocket, websocketOptions(() => (closing = true)));
  await app.register(apiRoutes, api);
  await app.register(openApiRoute, { version: deps.version, api });
  return app;
}
