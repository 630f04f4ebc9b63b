import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { lastLines } from '../../monitor/tailer.js';
import { AccountParams, Bot, LogsQuery, StopBody } from '../schemas.js';
import type { ServerDeps } from '../server.js';

export function botRoutes(deps: ServerDeps): FastifyPluginAsyncTypebox {
  const { supervisor } = deps;
  return async (app) => {
    app.addSchema(Bot);
    const BotRef = Type.Ref(Bot);

    app.get('/bots', { schema: { tags: ['bots'], response: { 200: Type.Object({ bots: Type.Array(BotRef) }) } } }, async () => ({
      bots: supervisor.list(),
    }));

    app.get('/bots/:account', { schema: { tags: ['bots'], params: AccountParams, response: { 200: BotRef } } }, async (req) =>
      supervisor.get(req.params.account).view(),
    );

    app.post('/bots/:account/start', { schema: { tags: ['bots'], params: AccountParams, response: { 201: BotRef } } }, async (req, reply) => {
      const bot = await supervisor.start(req.params.account);
      return reply.status(201).send(bot);
    });

    app.post(
      '/bots/:account/stop',
      { schema: { tags: ['bots'], params: AccountParams, body: Type.Optional(StopBody), response: { 200: BotRef } } },
      async (req) => {
        const graceMs = req.body?.graceMs;
        return supervisor.stop(req.params.account, graceMs === undefined ? {} : { graceMs });
      },
    );

    app.post(
      '/bots/:account/restart',
      { schema: { tags: ['bots'], params: AccountParams, body: Type.Optional(StopBody), response: { 200: BotRef } } },
      async (req) => {
        const graceMs = req.body?.graceMs;
        return supervisor.restart(req.params.account, graceMs === undefined ? {} : { graceMs });
      },
    );

    app.get(
      '/bots/:account/logs',
      { schema: { tags: ['bots'], params: AccountParams, querystring: LogsQuery, response: { 200: Type.String() } } },
      async (req, reply) => {
        const bot = supervisor.get(req.params.account);
        return reply.type('text/plain; charset=utf-8').send(lastLines(bot.logPath, req.query.lines));
      },
    );
  };
}
