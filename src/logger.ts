/**
 * The one root logger. Known secret fields are redacted by path; every secret value the daemon
 * holds (SPEC 15) is masked in each finished line, whatever field, message or error stack carries
 * it; bot environments are never logged. JSON lines, except on a terminal: there pino's own
 * pretty printer (pino-pretty, loaded only then) makes them readable. Files and journald get JSON.
 */
import { createRequire } from 'node:module';
import pino, { type DestinationStream, type Logger } from 'pino';

export const REDACT_PATHS = [
  'token',
  '*.token',
  'secret',
  '*.secret',
  '*.apiSecret',
  'password',
  '*.password',
  'connectionString',
  '*.connectionString',
  'chatId',
  '*.chatId',
  'env',
  '*.env',
  'req.headers.authorization',
  'headers.authorization',
];

/** What masks a finished line (a SecretMask's `fn`). */
export type Mask = (text: string) => string;

/** A destination that masks every line before handing it on (flush and the rest pass through). */
function masked(dest: DestinationStream & { flush?: (cb?: () => void) => void; flushSync?: () => void }, mask: Mask): DestinationStream {
  return {
    write: (line: string) => dest.write(mask(line)),
    ...(dest.flush ? { flush: (cb?: () => void) => dest.flush!(cb) } : {}),
    ...(dest.flushSync ? { flushSync: () => dest.flushSync!() } : {}),
  };
}

/**
 * The pretty printer for a terminal, synchronous (no worker thread): a supervisor's last lines
 * before a crash are the ones that matter. Null when it cannot be loaded (JSON then).
 */
function prettyStream(): DestinationStream | null {
  try {
    const pretty = createRequire(import.meta.url)('pino-pretty') as (o: object) => DestinationStream;
    return pretty({ colorize: true, sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' });
  } catch {
    return null;
  }
}

/**
 * `destination` given (tests): JSON to it. Otherwise stdout: readable lines when it is a terminal
 * (or BOTWARDEN_LOG_FORMAT=pretty), JSON lines when it is a file, a pipe or journald (or
 * BOTWARDEN_LOG_FORMAT=json).
 */
export function createLogger(level: string, destination?: DestinationStream, mask?: Mask, format: string | undefined = process.env.BOTWARDEN_LOG_FORMAT): Logger {
  let dest = destination;
  if (!dest) {
    const pretty = format === 'pretty' || (format !== 'json' && process.stdout.isTTY === true);
    // Synchronous writes: a supervisor's last lines before a crash or exit are the ones that matter.
    dest = (pretty ? prettyStream() : null) ?? pino.destination({ fd: 1, sync: true });
  }
  return pino({ level, base: { pid: process.pid }, redact: { paths: REDACT_PATHS, censor: '***' } }, mask ? masked(dest, mask) : dest);
}
