/**
 * The CLI's view of a daemon: where it listens and with which token, found
 * the way the daemon itself would (flags, env, data dir, config), and a small
 * HTTP / websocket client that tells "refused" from "unreachable".
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import WebSocket from 'ws';
import { loadConfigFile } from '../config/load.js';
import { DEFAULT_LISTEN, resolveSettings } from '../config/settings.js';
import { readToken } from '../token.js';

export interface Target {
  url: string;
  token: string | null;
  /** Where the address came from, for the "cannot reach" message. */
  from: string;
}

export interface GlobalOptions {
  listen?: string;
  dataDir?: string;
  config?: string;
}

export function resolveTarget(opts: GlobalOptions, env: NodeJS.ProcessEnv = process.env): Target {
  const s = resolveSettings({ listen: opts.listen, dataDir: opts.dataDir, config: opts.config }, env);
  const token = readToken(s.dataDir, s.token);
  if (s.listenOverride) return { url: toUrl(s.listenOverride), token, from: opts.listen ? '--listen' : 'BOTWARDEN_LISTEN' };
  // The running daemon wrote its real address (port 0 included) into its data dir.
  const info = path.join(s.dataDir, 'daemon.json');
  if (existsSync(info)) {
    try {
      const j = JSON.parse(readFileSync(info, 'utf8')) as { url?: string };
      if (j.url) return { url: j.url, token, from: info };
    } catch {
      // fall through to the config
    }
  }
  try {
    const listen = loadConfigFile(s.configPath).daemon.listen;
    if (listen) return { url: toUrl(listen), token, from: s.configPath };
  } catch {
    // an unreadable config is not the client's business: use the default
  }
  return { url: toUrl(DEFAULT_LISTEN), token, from: 'the default address' };
}

function toUrl(listen: string): string {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(listen.trim());
  if (!m) throw new UsageError(`bad address ${JSON.stringify(listen)}: expected HOST:PORT`);
  let host = m[1] ?? m[2] ?? '';
  if (host === '' || host === '0.0.0.0') host = '127.0.0.1';
  if (host === '::') host = '::1';
  return `http://${host.includes(':') ? `[${host}]` : host}:${m[3]}`;
}

export class UsageError extends Error {}

/** The daemon answered with an error: exit 1. */
export class RefusedError extends Error {
  constructor(
    readonly status: number,
    readonly body: { code?: string; message?: string; [k: string]: unknown },
  ) {
    super(body.message ?? `HTTP ${status}`);
  }
}

/** Nobody answered: exit 3. */
export class UnreachableError extends Error {}

export class Client {
  constructor(
    public target: Target,
    /** Finds the daemon again (a restarted daemon may listen elsewhere, e.g. on port 0). */
    private readonly locate: () => Target = () => target,
  ) {}

  relocate(): void {
    try {
      this.target = this.locate();
    } catch {
      // keep the old address
    }
  }

  async call<T = unknown>(method: string, p: string, body?: unknown): Promise<{ status: number; body: T; text: string }> {
    let res: Response;
    try {
      res = await fetch(this.target.url + p, {
        method,
        headers: {
          ...(this.target.token ? { authorization: `Bearer ${this.target.token}` } : {}),
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(120_000),
      });
    } catch (err) {
      throw new UnreachableError(`cannot reach the botwarden daemon at ${this.target.url} (address from ${this.target.from}): ${causeOf(err)}`);
    }
    const text = await res.text();
    let parsed: unknown = text;
    if ((res.headers.get('content-type') ?? '').includes('json')) parsed = JSON.parse(text);
    if (res.status >= 400) throw new RefusedError(res.status, typeof parsed === 'object' && parsed ? (parsed as RefusedError['body']) : { message: text });
    return { status: res.status, body: parsed as T, text };
  }

  /**
   * A websocket to `p`; resolves when open, rejects as unreachable or refused. `onMessage` is
   * attached before the handshake: a replay can arrive in the very packet that completes it.
   */
  socket(p: string, onMessage: (m: string) => void): Promise<WebSocket> {
    const url = this.target.url.replace(/^http/, 'ws') + p;
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers: this.target.token ? { authorization: `Bearer ${this.target.token}` } : {} });
      ws.on('message', (m: Buffer) => onMessage(m.toString()));
      ws.once('open', () => resolve(ws));
      ws.once('unexpected-response', (req, res) => {
        req.destroy();
        reject(new RefusedError(res.statusCode ?? 0, { message: `the daemon refused the stream (HTTP ${res.statusCode})${res.statusCode === 401 ? ': wrong or missing token' : ''}` }));
      });
      ws.once('error', (err) => reject(new UnreachableError(`cannot reach the botwarden daemon at ${this.target.url} (address from ${this.target.from}): ${causeOf(err)}`)));
    });
  }
}

function causeOf(err: unknown): string {
  const e = err as { cause?: { code?: string; message?: string }; code?: string; message?: string };
  return e.cause?.code ?? e.code ?? e.cause?.message ?? e.message ?? String(err);
}
