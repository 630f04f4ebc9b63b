/** The `key_stats` table: nonce errors counted per API key (they outlive leases and restarts). */
import type { DB } from './open.js';

export class KeyStats {
  private readonly bump;
  private readonly all;

  constructor(db: DB) {
    this.bump = db.prepare<[string]>('INSERT INTO key_stats (key_id, nonce_errors) VALUES (?, 1) ON CONFLICT (key_id) DO UPDATE SET nonce_errors = nonce_errors + 1');
    this.all = db.prepare('SELECT key_id, nonce_errors FROM key_stats');
  }

  countNonceError(keyId: string): void {
    this.bump.run(keyId);
  }

  /** key id -> nonce errors seen on it. */
  nonceErrors(): Map<string, number> {
    return new Map((this.all.all() as { key_id: string; nonce_errors: number }[]).map((r) => [r.key_id, r.nonce_errors]));
  }
}
