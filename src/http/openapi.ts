/**
 * GET /openapi.json: the OpenAPI document, built from the routes' schemas on its first request
 * and kept (as text) from then on. Neither @fastify/swagger nor the document is in memory before
 * (docs/benchmarks.md, "Memory by module"): the document is built on an instance of its own that
 * registers the same route groups, compiles none of their validators or serializers, and is closed
 * once it has told.
 */
import type { TypeBoxTypeProvider, FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import websocket from '@fastify/websocket';
import Fastify from 'fastify';
import { apiRoutes, type ApiRoutesOptions } from './routes/index.js';

export interface OpenApiOptions {
  version: string;
  /** The route groups' options (never used to answer: the document only reads their schemas). */
  api: ApiRoutesOptions;
}

/** The OpenAPI document of the API's routes, as JSON text. */
export async function openApiDocument({ version, api }: OpenApiOptions): Promise<string> {
  const { default: swagger } = await import('@fastify/swagger');
  const doc = Fastify({ logger: false }).withTypeProvider<TypeBoxTypeProvider>();
  // Only the schemas are read: no request is ever validated or answered here.
  doc.setValidatorCompiler(() => () => true);
  doc.setSerializerCompiler(() => (data) => JSON.stringify(data));
  await doc.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'botwarden', version, description: 'Process supervisor for trading bots (see docs/api.md).' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  // The streams are declared as websocket routes: described as the GET they start with.
  await doc.register(websocket);
  await doc.register(apiRoutes, api);
  await doc.ready();
  try {
    return JSON.stringify(doc.swagger());
  } finally {
    await doc.close();
  }
}

/** The route; the document is built once (a failed build is tried again on the next request). */
export const openApiRoute: FastifyPluginAsyncTypebox<OpenApiOptions> = async (app, o) => {
  let text: Promise<string> | null = null;
  app.get('/openapi.json', { schema: { hide: true } }, async (_req, reply) => {
    text ??= openApiDocument(o).catch((err: unknown) => {
      text = null;
      throw err;
    });
    return reply.type('application/json; charset=utf-8').send(await text);
  });
};
