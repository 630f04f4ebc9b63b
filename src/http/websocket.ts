/** Websockets (the event stream, a bot's log stream): their size limit and their goodbye at shutdown. */
import type { WebsocketPluginOptions } from '@fastify/websocket';
import { BODY_LIMIT } from './app.js';

/**
 * Say goodbye (1001) to the subscribers at shutdown, but never let a silent client hold it up.
 * `onClosing` is told first: from then on no new stream may start.
 */
export function websocketOptions(onClosing: () => void): WebsocketPluginOptions {
  return {
    options: { maxPayload: BODY_LIMIT },
    preClose(done) {
      onClosing();
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
  };
}
