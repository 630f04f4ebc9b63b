/**
 * The fastify instance and its connections: the server options, the JSON body parser, and what
 * happens to a socket that a response closes (client errors, refused websocket upgrades).
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import Fastify, { LogController } from 'fastify';
import type { ServerDeps } from './deps.js';
import { lazySerializers, lazyValidators } from './compilers.js';

export const BODY_LIMIT = 64 * 1024;
/** ajv's options for request validation (the test that compiles every validator uses them too). */
export const AJV_OPTIONS = { removeAdditional: false, coerceTypes: true, allErrors: false } as const;

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

/** The fastify instance with its server options; no hook, no route. */
function newInstance(deps: Pick<ServerDeps, 'logger' | 'trustProxy'>) {
  return Fastify({
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
    ajv: { customOptions: AJV_OPTIONS },
    schemaController: { compilersFactory: { buildValidator: lazyValidators, buildSerializer: lazySerializers } },
  }).withTypeProvider<TypeBoxTypeProvider>();
}

export type HttpApp = ReturnType<typeof newInstance>;

/**
 * fastify's own JSON parser (prototype-poisoning protection: __proto__ / constructor.prototype
 * keys are refused). Only the empty body is ours: with a JSON content type it is "no body", not
 * an error (curl -H 'content-type: application/json' -X POST).
 */
function jsonBodies(app: HttpApp): void {
  const defaultJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: BODY_LIMIT }, (req, body, done) => {
    if (String(body).trim() === '') return done(null, undefined);
    void defaultJson(req, body as string, done);
  });
}

/** Sockets a response closes: remembered (see clientErrorHandler), and closed after a refused websocket upgrade. */
function closingSockets(app: HttpApp): void {
  // Before fastify sees the request (a bad URL is answered without hooks): remember sockets whose
  // client asked for `Connection: close`.
  app.server.prependListener('request', (req: IncomingMessage) => {
    if (req.headers.connection?.toLowerCase() === 'close') closeAnnounced.add(req.socket);
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
}

/** The instance the API is built on: server options, JSON bodies, sockets closed as announced. */
export function createApp(deps: Pick<ServerDeps, 'logger' | 'trustProxy'>): HttpApp {
  const app = newInstance(deps);
  jsonBodies(app);
  closingSockets(app);
  return app;
}
