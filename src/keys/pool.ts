/**
 * API keys: names in the config, secrets only in the daemon's environment
 * (process env over the .env file). Leases and cooldowns live in the lock
 * backend, in the same transactions as the account locks. Secrets leave this
 * module only as a bot's environment.
 */
import type { Account, Config } from '../config/schema.js';
import type { KeyStats } from '../db/key-stats.js';
import { REJECTED_UNTIL, type LockBackend } from '../db/locks.js';

/** `rejected`: the exchange rejected it (invalid, signature, permission, IP); set aside until enabled (SPEC 17). */
export type KeyState = 'free' | 'leased' | 'cooling' | 'rejected' | 'missing';

export interface KeyView {
  id: string;
  state: KeyState;
  account: string | null;
  cooldownUntil: string | null;
  nonceErrors: number;
}

export class KeyPool {
  private others: readonly string[] = [];

  constructor(
    private config: Config,
    private readonly env: NodeJS.ProcessEnv,
    private readonly locks: LockBackend,
    private readonly stats: KeyStats,
    private readonly now: () => number,
  ) {}

  setConfig(config: Config): void {
    this.config = config;
  }

  isMissing(keyId: string): boolean {
    const ref = this.config.keys[keyId];
    return !ref || !this.env[ref.keyEnv] || !this.env[ref.secretEnv];
  }

  /** The account's pool in order, without missing keys (those are never leased). */
  candidates(account: Account): string[] | undefined {
    return account.keys?.pool.filter((k) => !this.isMissing(k));
  }

  /** The pair a bot gets, under its own variable names. Only for the spawn. */
  envFor(account: Account, keyId: string): Record<string, string> {
    const ref = this.config.keys[keyId];
    if (!account.keys || !ref) return {};
    return { [account.keys.envKey]: this.env[ref.keyEnv] ?? '', [account.keys.envSecret]: this.env[ref.secretEnv] ?? '' };
  }

  /** The daemon's other secrets (API token, alert URLs, database password, .env values: SPEC 15), masked with the keys. */
  setOtherSecrets(values: readonly string[]): void {
    this.others = values;
  }

  /** Every secret value: each configured key and secret, and the other secrets; masked wherever output is shown. */
  secretValues(): string[] {
    const out: string[] = [...this.others];
    for (const ref of Object.values(this.config.keys)) {
      for (const name of [ref.keyEnv, ref.secretEnv]) {
        const v = this.env[name];
        if (v) out.push(v);
      }
    }
    return out;
  }

  /** POST /keys/:id/enable: a rejected key may be leased again. */
  async enable(keyId: string): Promise<'enabled' | 'not-rejected' | 'unknown'> {
    if (!Object.hasOwn(this.config.keys, keyId)) return 'unknown';
    return (await this.locks.enableKey(keyId)) ? 'enabled' : 'not-rejected';
  }

  /** The key's own values (key and secret): how a process holding it is recognised (SPEC 17). */
  valuesOf(keyId: string): string[] {
    const ref = this.config.keys[keyId];
    if (!ref) return [];
    return [this.env[ref.keyEnv], this.env[ref.secretEnv]].filter((v): v is string => typeof v === 'string' && v.length >= 8);
  }

  countNonceError(keyId: string): void {
    this.stats.countNonceError(keyId);
  }

  async list(): Promise<KeyView[]> {
    const now = this.now();
    const [leases, cooling] = await Promise.all([this.locks.keyLeases(), this.locks.cooldowns(now)]);
    const leasedBy = new Map(leases.map((l) => [l.keyId, l.account]));
    const errors = this.stats.nonceErrors();
    return Object.keys(this.config.keys)
      .sort()
      .map((id) => {
        const until = cooling.get(id);
        const account = leasedBy.get(id) ?? null;
        const rejected = until !== undefined && until >= REJECTED_UNTIL;
        const state: KeyState = this.isMissing(id) ? 'missing' : account !== null ? 'leased' : rejected ? 'rejected' : until !== undefined ? 'cooling' : 'free';
        return { id, state, account, cooldownUntil: until !== undefined && !rejected ? new Date(until).toISOString() : null, nonceErrors: errors.get(id) ?? 0 };
      });
  }
}
