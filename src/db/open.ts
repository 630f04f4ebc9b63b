/**
 * Opening the state database: WAL, a busy timeout for the daemon's own
 * short transactions, and numbered migrations tracked by `user_version`.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { MIGRATIONS_DIR } from '../paths.js';

export type DB = Database.Database;

export function openDatabase(file: string, migrationsDir = MIGRATIONS_DIR): DB {
  const db = new Database(file, { timeout: 2000 });
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  migrate(db, migrationsDir);
  return db;
}

/** Applies `NNN_name.sql` files above the current user_version, each in one transaction. */
export function migrate(db: DB, dir: string): number {
  const files = readdirSync(dir)
    .map((f) => ({ f, n: Number(/^(\d+)_.*\.sql$/.exec(f)?.[1] ?? NaN) }))
    .filter((x) => Number.isInteger(x.n))
    .sort((a, b) => a.n - b.n);
  let version = db.pragma('user_version', { simple: true }) as number;
  for (const { f, n } of files) {
    if (n <= version) continue;
    const sql = readFileSync(path.join(dir, f), 'utf8');
    db.transaction(() => {
      db.exec(sql);
      db.pragma(`user_version = ${n}`);
    }).immediate();
    version = n;
  }
  return version;
}
