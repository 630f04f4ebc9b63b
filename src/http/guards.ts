/**
 * Request guards: the Host check against DNS rebinding (421) and the bearer
 * token (401), compared in constant time.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

/** Compares digests of equal length in constant time; the expected digest is computed once. */
export function tokenChecker(expected: string): (given: string | undefined) => boolean {
  const want = createHash('sha256').update(expected).digest();
  return (given) => given !== undefined && timingSafeEqual(want, createHash('sha256').update(given).digest());
}

export function bearer(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m?.[1];
}

/** Host names this daemon answers to: its listen host, loopback names, and configured extras. */
export function allowedHostSet(listenHost: string, extra: readonly string[]): Set<string> {
  const set = new Set(['localhost', '127.0.0.1', '::1', listenHost.toLowerCase()]);
  for (const h of extra) set.add(h.toLowerCase());
  return set;
}

/** `example.com:7070` -> `example.com`; `[::1]:7070` -> `::1`. */
export function hostName(hostHeader: string): string {
  const h = hostHeader.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']') > 0 ? h.indexOf(']') : undefined);
  const colon = h.lastIndexOf(':');
  return colon >= 0 ? h.slice(0, colon) : h;
}
