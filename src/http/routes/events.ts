import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { BotwardenEvent, EventFilter } from '../../events/types.js';
import { matchesFilter } from '../../events/types.js';
import { Event, EventsQuery } from '../schemas.js';
import type { EventStore } from '../../events/store.js';
import type { Mask } from '../../logger.js';

/** A client that does not read (buffer above this) is cut off rather than grow the daemon's memory. */
const MAX_BUFFERED = 8 * 1024 * 1024;

export interface EventRoutesOptions {
  events: EventStore;
  /** Masks every secret the daemon holds (SPEC 15) in a streamed event. */
  mask: Mask;
}

/** The stored events (history), and the live stream (websocket) that resumes after an id. */
export const eventRoutes: FastifyPluginAsyncTypebox<EventRoutesOptions> = async (app, { events, mask }) => {
  app.get(
    '/events/history',
    { schema: { tags: ['events'], querystring: EventsQuery, response: { 200: Type.Object({ events: Type.Array(Event) }) } } },
    async (req) => ({ events: events.history(req.query.since, req.query.limit, filterOf(req.query)) }),
  );

  // Events are masked when stored; masked again here for those stored before a secret was known.
  app.get('/events', { websocket: true, schema: { tags: ['events'], querystring: EventsQuery } }, (socket, req) => {
    const q = req.query as { since?: number; types?: string; account?: string };
    const filter = filterOf(q);
    const send = (e: BotwardenEvent) => {
      if (socket.bufferedAmount > MAX_BUFFERED) {
        socket.close(1013, 'too slow: reconnect with since=<last id>');
        return;
      }
      socket.send(mask(JSON.stringify(e)));
    };
    // Replay and subscribe in one synchronous run: events are stored and
    // emitted in one call too, so nothing can slip between the two.
    if (q.since !== undefined) {
      let cursor = q.since;
      for (;;) {
        const page = events.history(cursor, 1000, filter);
        for (const e of page) send(e);
        if (page.length < 1000) break;
        cursor = page[page.length - 1]!.id;
      }
    }
    const unsubscribe = events.subscribe((e) => {
      if (matchesFilter(e, filter)) send(e);
    });
    socket.on('close', unsubscribe);
    socket.on('error', unsubscribe);
    socket.on('message', () => {
      // The stream is one-way; incoming messages are ignored.
    });
  });
};

function filterOf(q: { types?: string | undefined; account?: string | undefined }): EventFilter {
  const types = q.types
    ?.split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '');
  return { types: types && types.length > 0 ? types : undefined, account: q.account };
}
