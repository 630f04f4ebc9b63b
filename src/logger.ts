/** The one root logger. Secrets are redacted by path; bot environments are never logged. */
import pino, { type DestinationStream, type Logger } from 'pino';

export const REDACT_PATHS = [
  'token',
  '*.token',
  'secret',
  '*.secret',
  '*.apiSecret',
  'env',
  '*.env',
  'req.headers.authorization',
  'headers.authorization',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  // Synchronous writes: a supervisor's last lines before a crash or exit are the ones that matter.
  return pino({ level, base: { pid: process.pid }, redact: { paths: REDACT_PATHS, censor: '***' } }, destination ?? pino.destination({ fd: 1, sync: true }));
}
