import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Mask } from '../../logger.js';
import { lastLines } from '../../output/tailer.js';
import type { Supervisor } from '../../supervisor/supervisor.js';
import { AccountParams, Bot, errorResponses, LogsQuery, StopBody } from '../schemas.js';

const AUTH = { 401: ['UNAUTHORIZED'], 421: ['MISDIRECTED_REQUEST'] };
const ONE = errorResponses({ ...AUTH, 400: ['INVALID_ACCOUNT_ID'], 404: ['UNKNOWN_ACCOUNT'] });
const START = errorResponses({
  ...AUTH,
  400: ['INVALID_ACCOUNT_ID', 'BAD_REQUEST'],
  404: ['UNKNOWN_ACCOUNT'],
  409: ['ACCOUNT_LOCKED', 'DUPLICATE_RUNNING', 'NO_FREE_KEY'],
  413: ['BODY_TOO_LARGE'],
  500: ['SPAWN_FAILED'],
  503: ['LOCK_BACKEND_UNAVAILABLE', 'SHUTTING_DOWN'],
});
const STOP = errorResponses({ ...AUTH, 400: ['INVALID_ACCOUNT_ID', 'INVALID_BODY', 'BAD_REQUEST'], 404: ['UNKNOWN_ACCOUNT'], 413: ['BODY_TOO_LARGE'] });
export interface BotRoutesOptions {
  supervisor: Supervisor;
  /** Masks every secret the daemon holds (SPEC 15) in a followed log. */
  mask: Mask;
}

/** The bots: list, one, start, stop, restart, and their output (the last lines, or followed). */
export const botRoutes: FastifyPluginAsyncTypebox<BotRoutesOptions> = async (app, { supervisor, mask }) => {
  app.addSchema(Bot);
  const BotRef = Type.Ref(Bot);

  app.get('/bots', { schema: { tags: ['bots'], response: { 200: Type.Object({ bots: Type.Array(BotRef) }) } } }, async () => ({
    bots: supervisor.list(),
  }));

  app.get('/bots/:account', { schema: { tags: ['bots'], params: AccountParams, response: { 200: BotRef, ...ONE } } }, async (req) =>
    supervisor.get(req.params.account).view(),
  );

  app.post('/bots/:account/start', { schema: { tags: ['bots'], params: AccountParams, response: { 201: BotRef, ...START } } }, async (req, reply) => {
    const bot = await supervisor.start(req.params.account);
    return reply.status(201).send(bot);
  });

  app.post(
    '/bots/:account/stop',
    { schema: { tags: ['bots'], params: AccountParams, body: Type.Optional(StopBody), response: { 200: BotRef, ...STOP } } },
    async (req) => {
      const { graceMs, force } = req.body ?? {};
      return supervisor.stop(req.params.account, { ...(graceMs !== undefined ? { graceMs } : {}), ...(force ? { force } : {}) });
    },
  );

  app.post(
    '/bots/:account/restart',
    { schema: { tags: ['bots'], params: AccountParams, body: Type.Optional(StopBody), response: { 200: BotRef, ...START } } },
    async (req) => {
      const graceMs = req.body?.graceMs;
      return supervisor.restart(req.params.account, graceMs === undefined ? {} : { graceMs });
    },
  );

  // Follow a bot's output: the last `lines` lines, then every new one (websocket, one line a message).
  app.get(
    '/bots/:account/logs/stream',
    {
      websocket: true,
      schema: { tags: ['bots'], params: AccountParams, querystring: LogsQuery },
      // 404 before the upgrade, not a socket closed without a word.
      preHandler: async (req) => void supervisor.get((req.params).account),
    },
    (socket, req) => {
      const { account } = req.params;
      const bot = supervisor.get(account);
      // Every secret the daemon holds is masked (SPEC 15): one regex over all of them per line.
      const { lines } = req.query;
      const tail = lastLines(bot.logPath, lines);
      for (const line of tail.split('\n').slice(0, -1)) socket.send(mask(line));
      const off = supervisor.onLine((acct, line) => {
        if (acct === account && socket.bufferedAmount < 8 * 1024 * 1024) socket.send(mask(line));
      });
      socket.on('close', off);
      socket.on('error', off);
    },
  );

  app.get(
    '/bots/:account/logs',
    { schema: { tags: ['bots'], params: AccountParams, querystring: LogsQuery, response: { 200: Type.String(), ...ONE } } },
    async (req, reply) => {
      const bot = supervisor.get(req.params.account);
      // The bot's own output; every secret the daemon holds is masked (the onSend hook, SPEC 15).
      return reply.type('text/plain; charset=utf-8').send(lastLines(bot.logPath, req.query.lines));
    },
  );
};
