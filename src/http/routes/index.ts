/** Every route group of the API, in the order the OpenAPI document lists them. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { botRoutes, type BotRoutesOptions } from './bots.js';
import { dashboardRoutes } from './dashboard.js';
import { eventRoutes, type EventRoutesOptions } from './events.js';
import { keyRoutes, type KeyRoutesOptions } from './keys.js';
import { observeRoutes, type ObserveRoutesOptions } from './observe.js';
import { systemRoutes, type SystemRoutesOptions } from './system.js';

/** What the route groups are given: each takes its part. */
export type ApiRoutesOptions = BotRoutesOptions & EventRoutesOptions & SystemRoutesOptions & KeyRoutesOptions & ObserveRoutesOptions;

export const apiRoutes: FastifyPluginAsyncTypebox<ApiRoutesOptions> = async (app, o) => {
  await app.register(botRoutes, o);
  await app.register(eventRoutes, o);
  await app.register(systemRoutes, o);
  await app.register(keyRoutes, o);
  await app.register(observeRoutes, o);
  await app.register(dashboardRoutes);
};
