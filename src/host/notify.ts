/**
 * systemd's sd_notify protocol for one bot (SPEC 16): a unix datagram socket the bot finds in
 * NOTIFY_SOCKET. Bots that speak it (freqtrade --sd-notify, any sd_notify library) need no change:
 * `READY=1` (the bot is up), `STATUS=...` (a line for people), `WATCHDOG=1` (alive, at least every
 * WATCHDOG_USEC). Node has no unix datagram sockets, so the well-kept `unix-dgram` addon does the
 * socket. The socket file is made in a 0700 folder of the data dir and is 0600 (only this user
 * can speak for a bot); its path is fixed per account, so a bot adopted by the next daemon keeps
 * talking to the same path, which that daemon binds again.
 */
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { createSocket } from 'unix-dgram';

export interface NotifyMessage {
  ready: boolean;
  watchdog: boolean;
  status: string | null;
  stopping: boolean;
}

/** Parses one datagram: newline-separated KEY=VALUE assignments. */
export function parseNotify(text: string): NotifyMessage {
  const m: NotifyMessage = { ready: false, watchdog: false, status: null, stopping: false };
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (key === 'READY' && value === '1') m.ready = true;
    else if (key === 'WATCHDOG' && value === '1') m.watchdog = true;
    else if (key === 'STOPPING' && value === '1') m.stopping = true;
    else if (key === 'STATUS') m.status = value.slice(0, 500);
  }
  return m;
}

/** The socket path of an account: short (sun_path holds 108 bytes) and the same for every daemon. */
export function notifyPath(dataDir: string, account: string): string {
  return path.join(dataDir, 'notify', `${createHash('sha256').update(account).digest('hex').slice(0, 16)}.sock`);
}

export class NotifySocket {
  private sock: ReturnType<typeof createSocket> | null = null;

  constructor(
    readonly path: string,
    private readonly onMessage: (m: NotifyMessage) => void,
  ) {}

  /** Binds the socket (replacing a file left by a previous daemon). */
  open(): void {
    mkdirSync(path.dirname(this.path), { recursive: true, mode: 0o700 });
    rmSync(this.path, { force: true });
    const sock = createSocket('unix_dgram', (buf) => this.onMessage(parseNotify(buf.toString('utf8'))));
    sock.on('error', () => undefined);
    sock.bind(this.path);
    chmodSync(this.path, 0o600);
    this.sock = sock;
  }

  close(): void {
    this.sock?.close();
    this.sock = null;
    rmSync(this.path, { force: true });
  }
}
