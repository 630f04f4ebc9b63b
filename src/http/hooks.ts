/**
 * What every request goes through: the guards before a route runs (Host, token, brute force,
 * role; strict input), the audit trail and the secret mask on the way out, and the error bodies.
 */
import type { FastifyError } from 'fastify';
import { Errors, type BotwardenError } from '../errors.js';
import { allows, requiredRole } from '../auth/roles.js';
import type { FailureLimiter } from '../auth/limiter.js';
import type { Identity, TokenRegistry } from '../auth/tokens.js';
import type { EventStore } from '../events/store.js';
import type { Mask } from '../logger.js';
import type { HttpApp } from './app.js';
import { toBotwardenError, toErrorBody } from './errors.js';
import { bearer, hostName } from './guards.js';
import { DASHBOARD_PATHS } from './routes/dashboard.js';

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

/** Routes a websocket may authenticate with `?token=` (a browser cannot set the header on them). */
const TOKEN_IN_QUERY = new Set(['/events', '/bots/:account/logs/stream']);

export interface GuardOptions {
  /** Host names this daemon answers to (DNS rebinding: 421 for any other). */
  hosts: ReadonlySet<string>;
  tokens: Pick<TokenRegistry, 'identify'>;
  limiter: Pick<FailureLimiter, 'blocked' | 'fail'>;
  /** True once the daemon is closing: no new stream may start. */
  closing: () => boolean;
}

/**
 * Before any route: the Host check, the token (header, or query for a websocket), the brute-force
 * window (SPEC 18), then the role the route needs. /health and the dashboard's files need no token.
 */
export function addRequestGuards(app: HttpApp, { hosts, tokens, limiter, closing }: GuardOptions): void {
  app.decorateRequest('identity', null);
  app.decorateRequest('quietRefusal', false);
  // Callback style, not async: this runs on every request, 200 of them at once in a start race.
  app.addHook('onRequest', (req, _reply, done) => {
    // While closing, no new stream may start (a following CLI would reconnect at once).
    if (req.headers.upgrade !== undefined && closing()) return done(Errors.shuttingDown());
    const host = req.headers.host;
    if (host === undefined || !hosts.has(hostName(host))) return done(Errors.misdirected(host ?? ''));
    const route = req.routeOptions.url;
    if (route === '/health' || (route !== undefined && DASHBOARD_PATHS.has(route))) return done();
    let given = bearer(req.headers.authorization);
    if (given === undefined && route !== undefined && TOKEN_IN_QUERY.has(route)) {
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
}

/**
 * Strict input: what a route does not declare, it refuses (a trader who types ?grace=5000 must
 * not believe it was taken into account). Declared schemas refuse unknown names themselves.
 */
export function addStrictInput(app: HttpApp): void {
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
}

/**
 * On the way out, in this order. The audit trail (SPEC 18): every change an authenticated caller
 * asked for, and every refusal (401, 403, 429), with its final status; emitted before the reply
 * leaves, so it is committed with the reply. A 429 is audited once per window and address: a
 * blocked client cannot flood the event store and prune older events away.
 *
 * Then nothing a reply says may be undone by a crash: it leaves once the writes so far are
 * committed (at once, unless a group is open: then with the group's commit, at the end of this
 * turn). And no secret leaves in it (SPEC 15): every text body is masked, an error's message too
 * (a failed spawn names its command line). The dashboard's files are Buffers and hold none.
 */
export function addReplyHooks(app: HttpApp, events: Pick<EventStore, 'emit' | 'durable'>, mask: Mask): void {
  app.addHook('onSend', (req, reply, payload, done) => {
    const status = reply.statusCode;
    const change = req.identity !== null && req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'OPTIONS';
    if (change || status === 401 || status === 403 || (status === 429 && !req.quietRefusal)) {
      const account = (req.params as { account?: unknown } | undefined)?.account;
      events.emit('audit', {
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
    void events.durable().then(() => done(null, out)); // never rejects: false is a lost commit, already logged
  });
}

/** Every error as a coded body (errors.ts); a route that matched nothing is a coded 404. */
export function setErrorHandlers(app: HttpApp): void {
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
}
