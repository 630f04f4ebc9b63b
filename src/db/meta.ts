/** The `meta` table: small named values; the health check writes a probe row to prove storage works. */
import type { DB } from './open.js';

export class Meta {
  private readonly upsert;

  constructor(db: DB) {
    this.upsert = db.prepare<[string, string]>('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
  }

  /** Throws when SQLite cannot write (full disk, read-only, I/O error). */
  probeWrite(nowIso: string): void {
    this.upsert.run('health_probe', nowIso);
  }
}
