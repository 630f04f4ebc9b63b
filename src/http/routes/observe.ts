import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ALERT_FORMATS } from '../../config/schema.js';
import { Errors } from '../../errors.js';
import type { AlertService } from '../../alerts/service.js';
import type { Metrics } from '../../metrics/metrics.js';
import { errorResponses } from '../schemas.js';

const AlertParams = Type.Object({ name: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' }) }, { additionalProperties: false });

export interface ObserveRoutesOptions {
  metrics: Pick<Metrics, 'text'>;
  alerts: Pick<AlertService, 'list' | 'test'>;
}

/** Prometheus metrics and alert targets. */
export const observeRoutes: FastifyPluginAsyncTypebox<ObserveRoutesOptions> = async (app, { metrics, alerts }) => {
  app.get('/metrics', { schema: { tags: ['system'], response: { 200: Type.String(), ...errorResponses({ 401: ['UNAUTHORIZED'] }) } } }, async (_req, reply) =>
    reply.type('text/plain; version=0.0.4; charset=utf-8').send(await metrics.text()),
  );

  app.get(
    '/alerts',
    {
      schema: {
        tags: ['alerts'],
        response: {
          200: Type.Object({
            alerts: Type.Array(
              Type.Object({
                name: Type.String(),
                format: Type.Union(ALERT_FORMATS.map((f) => Type.Literal(f))),
                url: Type.String({ description: 'masked' }),
                state: Type.Union([Type.Literal('ok'), Type.Literal('failing'), Type.Literal('idle')]),
                lastError: Type.Union([Type.String(), Type.Null()]),
                queued: Type.Integer(),
              }),
            ),
          }),
        },
      },
    },
    async () => ({ alerts: alerts.list() }),
  );

  app.post(
    '/alerts/:name/test',
    { schema: { tags: ['alerts'], params: AlertParams, response: { 202: Type.Object({ status: Type.Literal('queued') }), ...errorResponses({ 404: ['UNKNOWN_ALERT'] }) } } },
    async (req, reply) => {
      if (!alerts.test(req.params.name)) throw Errors.unknownAlert(req.params.name);
      return reply.status(202).send({ status: 'queued' as const });
    },
  );
};
