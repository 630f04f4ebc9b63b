/**
 * Who may do what (SPEC 18). `viewer`: every GET route but a bot's output; `operator`: also the
 * output, start, stop, restart and an alert test; `admin`: everything (config reload, keys).
 * Anything not listed here that changes something needs admin: a new route is closed until it is
 * given a role.
 */
import { ROLES, type Role } from '../config/schema.js';

export { ROLES, type Role };

export const rank = (r: Role): number => ROLES.indexOf(r);

export function allows(have: Role, need: Role): boolean {
  return rank(have) >= rank(need);
}

/** Route patterns (fastify's `routeOptions.url`) whose reads need more than viewer. */
const READS: Readonly<Record<string, Role>> = {
  '/bots/:account/logs': 'operator',
  '/bots/:account/logs/stream': 'operator',
};

/** Route patterns whose changes need less than admin. */
const CHANGES: Readonly<Record<string, Role>> = {
  '/bots/:account/start': 'operator',
  '/bots/:account/stop': 'operator',
  '/bots/:account/restart': 'operator',
  '/alerts/:name/test': 'operator',
};

/** The role a request needs; `route` undefined: no such route (a read gets its 404 with any role). */
export function requiredRole(method: string, route: string | undefined): Role {
  const read = method === 'GET' || method === 'HEAD';
  if (route === undefined) return read ? 'viewer' : 'admin';
  return (read ? READS[route] : CHANGES[route]) ?? (read ? 'viewer' : 'admin');
}
