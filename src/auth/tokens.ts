/**
 * The tokens the daemon accepts (SPEC 18): the generated data/api-token (admin, named `api-token`
 * in the audit trail) and the named ones of `auth.tokens`. A given token is hashed once and
 * compared with every known hash in constant time (equal-length digests, no early exit), so the
 * time taken tells nothing about which token, or how much of one, was right.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Config, Role, RoleToken } from '../config/schema.js';

export const API_TOKEN_NAME = 'api-token';

export interface Identity {
  name: string;
  role: Role;
}

interface Known extends Identity {
  digest: Buffer;
}

const digest = (t: string) => createHash('sha256').update(t).digest();

export class TokenRegistry {
  private known: Known[] = [];
  private source: readonly RoleToken[] | null = null;

  /**
   * @param adminToken the generated (or BOTWARDEN_TOKEN) token: always admin
   * @param named the current named tokens; asked on every check, so a config reload takes effect
   *   at once (the same array is hashed once)
   */
  constructor(
    private readonly adminToken: string,
    private readonly named: () => readonly RoleToken[] = () => [],
  ) {}

  identify(given: string | undefined): Identity | null {
    if (given === undefined) return null;
    const list = this.current();
    const d = digest(given);
    let found: Known | null = null;
    for (const k of list) {
      // Every entry is compared: the first match wins (the api-token first), none is skipped.
      if (timingSafeEqual(k.digest, d) && found === null) found = k;
    }
    return found ? { name: found.name, role: found.role } : null;
  }

  private current(): Known[] {
    const named = this.named();
    if (named !== this.source) {
      this.source = named;
      this.known = [{ name: API_TOKEN_NAME, role: 'admin', digest: digest(this.adminToken) }, ...named.map((t) => ({ name: t.name, role: t.role, digest: digest(t.token) }))];
    }
    return this.known;
  }
}

/** A config's named tokens (one array per config object, so the registry hashes them once). */
export function namedTokens(config: Pick<Config, 'auth'>): readonly RoleToken[] {
  return config.auth?.tokens ?? NONE;
}
const NONE: readonly RoleToken[] = Object.freeze([]);

/** The environment without the variables that hold named tokens: no bot inherits an API token. */
export function withoutTokenVariables(env: NodeJS.ProcessEnv, config: Pick<Config, 'auth'>): NodeJS.ProcessEnv {
  const names = new Set(namedTokens(config).map((t) => t.tokenEnv));
  if (names.size === 0) return env;
  return Object.fromEntries(Object.entries(env).filter(([k]) => !names.has(k)));
}
