/**
 * The dashboard: its static files from `dashboard/` (the page, its script, style and icon), read once, served with
 * a strict Content-Security-Policy. No token is needed to load them (they hold
 * no data); every API call the page makes carries the token.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { FastifyPluginAsync } from 'fastify';
import { DASHBOARD_DIR } from '../../paths.js';

const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/ui/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/ui/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
  // Browsers ask for it by this name whatever the page says: served without a token (no 401 in the console).
  '/favicon.ico': { file: 'favicon.svg', type: 'image/svg+xml' },
};

/** Paths that need no token. */
export const DASHBOARD_PATHS: ReadonlySet<string> = new Set(Object.keys(FILES));

/** The dashboard's files, served without a token under a strict Content-Security-Policy. */
export const dashboardRoutes: FastifyPluginAsync = async (app) => {
  for (const [url, { file, type }] of Object.entries(FILES)) {
    let body: Buffer | null = null;
    app.get(url, { schema: { hide: true } }, async (_req, reply) => {
      body ??= readFileSync(path.join(DASHBOARD_DIR, file));
      return reply
        .type(type)
        .header('content-security-policy', CSP)
        .header('x-content-type-options', 'nosniff')
        .header('referrer-policy', 'no-referrer')
        .header('cache-control', 'no-cache')
        .send(body);
    });
  }
};
