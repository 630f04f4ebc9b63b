/**
 * The HTTP adapter: builds a fastify app around the services it is given.
 * It never listens (main wires and listens) so tests use it on port 0.
 */
import swagger from '@fastify/swagger';
import websocket from '@fastify/websocket';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import Fastify, { LogController, type FastifyError } from 'fastify';
import { Errors, type BotwardenError } from '../errors.js';
import { toBotwardenError, toErrorBody } from './errors.js';
import type { ServerDeps } from './deps.js';
import { allowedHostSet, bearer, hostName } from './guards.js';
import { allows, requiredRole } from '../auth/roles.js';
import { TokenRegistry, type Identity } from '../auth/tokens.js';
import { FailureLimiter } from '../auth/limiter.js';
import { botRoutes } from './routes/bots.js';
import { eventRoutes } from './routes/events.js';
import { keyRoutes } from './routes/keys.js';
import { observeRoutes } from './routes/observe.js';
import { dashboardRoutes, DASHBOARD_PATHS } from './routes/dashboard.js';
import { systemRoutes } from './routes/system.js';

export type { ServerDeps } from './deps.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Who sent it (SPEC 18): the token's name and role; null without a valid token. */
    identity: Identity | null;
    /** A 429 past the first of its window: answered, not audited again. */
    quietRefusal: boolean;
  }
}

/** Audit fields are cut to this length (a route that matched nothing is the raw path). */
const AUDIT_FIELD_MAX = 200;

export const BODY_LIMIT = 64 * 1024;


/** Sockets whose response closes the connection: whatever the client still sends is dropped, not answered. */
const closeAnnounced = new WeakSet<Socket>();

/**
 * A request the HTTP parser cannot read gets 400 (408 timeout, 431 headers too large) and the
 * socket is closed. But bytes that arrive after a response that announced `Connection: close` (a
 * body we refused before reading it) are no new request: answering them would put a second
 * response on the wire.
 */
function clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  if (closeAnnounced.has(socket)) {
    // Leftovers of a request whose answer is on its way (and closes the socket): let it finish.
    setTimeout(() => socket.destroy(), 5000).unref();
    return;
  }
  if (!socket.writable) return void socket.destroy();
  const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
  const body = JSON.stringify({ statusCode: status, error: STATUS_CODES[status], code: 'BAD_REQUEST', message: status === 431 ? 'Request headers too large.' : status === 408 ? 'Request timed out.' : 'Malformed HTTP request.' });
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${body}`);
  socket.destroySoon();
}

export async function buildServer(deps: ServerDeps) {
  const app = Fastify({
    clientErrorHandler,
    loggerInstance: deps.logger.child({ module: 'http' }),
    logController: new LogController({ disableRequestLogging: true }),
    // No per-request child logger (request logging is off): under 200 racing requests building one
    // child with its redaction per request cost more than the lock decision. Errors log the id.
    childLoggerFactory: (logger) => logger,
    bodyLimit: BODY_LIMIT,
    forceCloseConnections: true,
    // Behind a reverse proxy (SPEC 18): trust one hop, so the client address is the one the proxy
    // added last to X-Forwarded-For; whatever a client wrote there itself stays to the left, unused.
    ...(deps.trustProxy ? { trustProxy: (_address: string, hop: number) => hop === 0 } : {}),
    ajv: { customOptions: { removeAdditional: false, coerceTypes: true, allErrors: false } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  // fastify's own JSON parser (prototype-poisoning protection: __proto__ / constructor.prototype
  // keys are refused). Only the empty body is ours: with a JSON content type it is "no body", not
  // an error (curl -H 'content-type: application/json' -X POST).
  const defaultJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: BODY_LIMIT }, (req, body, done) => {
    if (String(body).trim() === '') return done(null, undefined);
    void defaultJson(req, body as string, done);
  });

  // Before fastify sees the request (a bad URL is answered without hooks): remember sockets whose
  // client asked for `Connection: close`.
  app.server.prependListener('request', (req: IncomingMessage) => {
    if (req.headers.connection?.toLowerCase() === 'close') closeAnnounced.add(req.socket);
  });

  let closing = false;
  const hosts = allowedHostSet(deps.listenHost, deps.allowedHosts);
  const tokens = new TokenRegistry(deps.token, deps.roleTokens);
  const httpLog = deps.logger.child({ module: 'http' });
  const limiter = new FailureLimiter({
    now: deps.now ?? (() => performance.now()),
    // One line per window, not one per refused request.
    onBlock: (remote, ms) => httpLog.warn({ remote, failures: limiter.maxFailures, windowMs: limiter.windowMs, retryAfterS: Math.ceil(ms / 1000) }, 'too many failed authentications from one address: refused until its window frees'),
  });
  app.decorateRequest('identity', null);
  app.decorateRequest('quietRefusal', false);
  // Callback style, not async: this runs on every request, 200 of them at once in a start race.
  app.addHook('onRequest', (req, _reply, done) => {
    // While closing, no new stream may start (a following CLI would reconnect at once).
    if (closing && req.headers.upgrade !== undefined) return done(Errors.shuttingDown());
    const host = req.headers.host;
    if (host === undefined || !hosts.has(hostName(host))) return done(Errors.misdirected(host ?? ''));
    const route = req.routeOptions.url;
    if (route === '/health' || (route !== undefined && DASHBOARD_PATHS.has(route))) return done();
    let given = bearer(req.headers.authorization);
    // Websockets may carry the token in the query (a browser cannot set the header on them).
    if (given === undefined && (route === '/events' || route === '/bots/:account/logs/stream')) {
      const q: unknown = (req.query as { token?: unknown } | undefined)?.token;
      // ?token=a&token=b arrives as an array: a malformed request, not a token to hash.
      if (q !== undefined && typeof q !== 'string') return done(Errors.badRequest('Give the token once: ?token=<token>.'));
      given = q;
    }
    // Brute force (SPEC 18): an address with ten failures in the window is refused, right token or not.
    const block = limiter.blocked(req.ip);
    if (block) {
      req.quietRefusal = !block.first;
      return done(Errors.tooManyRequests(Math.ceil(block.retryAfterMs / 1000)));
    }
    const who = tokens.identify(given);
    if (!who) {
      // A wrong token is a guess; none at all (a probe, a page before its login) is not.
      if (given !== undefined) limiter.fail(req.ip);
      return done(Errors.unauthorized());
    }
    req.identity = who;
    const needs = requiredRole(req.method, route);
    if (!allows(who.role, needs)) return done(Errors.forbidden(who.name, who.role, needs, `${req.method} ${route ?? ''}`));
    done();
  });

  // Strict input: what a route does not declare, it refuses (a trader who types ?grace=5000 must
  // not believe it was taken into account). Declared schemas refuse unknown names themselves.
  app.addHook('preValidation', (req, _reply, done) => {
    const schema = req.routeOptions.schema;
    if (!schema?.querystring) {
      const unknown = Object.keys((req.query as Record<string, unknown> | undefined) ?? {});
      if (unknown.length > 0) return done(Errors.invalidQuery(`Unknown query parameter${unknown.length > 1 ? 's' : ''}: ${unknown.join(', ')}; this route takes none.`));
    }
    if (!schema?.body && req.body !== undefined) {
      return done(Errors.badRequest(`${req.method} ${req.routeOptions.url ?? ''} takes no body; remove it.`));
    }
    done();
  });

  // Nothing a reply says may be undone by a crash: it leaves once the writes so far are committed
  // (at once, unless a group is open: then with the group's commit, at the end of this turn).
  // And no secret leaves in it (SPEC 15): every text body is masked, an error's message too (a
  // failed spawn names its command line). The dashboard's files are Buffers and hold none.
  const mask = deps.mask ?? ((t: string) => t);
  // The audit trail (SPEC 18): every change an authenticated caller asked for, and every refusal
  // (401, 403, 429), with its final status. Emitted here, before the reply leaves, so it is
  // committed with the reply (the onSend below waits for that commit). A 429 is audited once per
  // window and address: a blocked client cannot flood the event store and prune older events away.
  app.addHook('onSend', (req, reply, payload, done) => {
    const status = reply.statusCode;
    const change = req.identity !== null && req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'OPTIONS';
    if (change || status === 401 || status === 403 || (status === 429 && !req.quietRefusal)) {
      const account = (req.params as { account?: unknown } | undefined)?.account;
      deps.events.emit('audit', {
        ...(typeof account === 'string' ? { account: account.slice(0, AUDIT_FIELD_MAX) } : {}),
        actor: req.identity?.name ?? 'anonymous',
        role: req.identity?.role ?? null,
        remote: req.ip,
        method: req.method,
        route: (req.routeOptions.url ?? req.url.split('?')[0] ?? '').slice(0, AUDIT_FIELD_MAX),
        status,
      });
    }
    done(null, payload);
  });
  app.addHook('onSend', (_req, _reply, payload, done) => {
    const out = typeof payload === 'string' ? mask(payload) : payload;
    void deps.events.durable().then(() => done(null, out)); // never rejects: false is a lost commit, already logged
  });

  // A refused websocket upgrade (401, 421, 400) is answered on a socket that sits outside the
  // HTTP server's bookkeeping: close it, or it leaks and holds up app.close().
  app.addHook('onResponse', (req, reply, done) => {
    if (!reply.raw.shouldKeepAlive) closeAnnounced.add(req.raw.socket);
    if (req.headers.upgrade !== undefined && reply.statusCode >= 400) {
      const socket = req.raw.socket;
      socket.end();
      setTimeout(() => socket.destroy(), 1000).unref();
    }
    done();
  });

  app.setErrorHandler((err: FastifyError | BotwardenError, req, reply) => {
    const coded = toBotwardenError(err, req.params as Record<string, string> | undefined);
    const body = toErrorBody(coded);
    if (coded.code === 'TOO_MANY_REQUESTS') void reply.header('retry-after', String(coded.details.retryAfterSeconds));
    // The whole error goes to the log; a client sees only the coded message.
    if (body.statusCode >= 500) req.log.error({ err, reqId: req.id, url: req.url.split('?')[0] }, 'request failed');
    else req.log.debug({ code: body.code }, body.message);
    return reply.status(body.statusCode).type('application/json').send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    const body = toErrorBody(Errors.notFound(`No route ${req.method} ${req.url.split('?')[0]}.`));
    return reply.status(404).send(body);
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'botwarden', version: deps.version, description: 'Process supervisor for trading bots (see docs/api.md).' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  await app.register(websocket, {
    options: { maxPayload: BODY_LIMIT },
    // Say goodbye (1001) to event subscribers, but never let a silent client hold up a shutdown.
    preClose(done) {
      closing = true;
      const wss = this.websocketServer;
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        clearTimeout(t);
        for (const c of wss.clients) c.terminate();
        wss.close(() => done());
      };
      // Done as soon as every subscriber has said goodbye back (at once when there is none).
      const t = setTimeout(finish, 200);
      t.unref();
      for (const c of wss.clients) {
        c.once('close', () => {
          if (wss.clients.size === 0) finish();
        });
        c.close(1001, 'daemon stopping');
      }
      if (wss.clients.size === 0) finish();
    },
  });
  await app.register(botRoutes(deps));
  await app.register(eventRoutes(deps));
  await app.register(systemRoutes(deps, (t) => tokens.identify(t)));
  await app.register(keyRoutes(deps));
  await app.register(observeRoutes(deps));
  await app.register(dashboardRoutes());
  return app;
}

