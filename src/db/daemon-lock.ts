/**
 * One daemon per data dir. An exclusive SQLite lock on a separate file: the OS
 * drops it when the process dies (even by SIGKILL), so no stale lock files and
 * no manual cleanup. `timeout: 0` refuses a second daemon at once instead of
 * after the default 5 s busy wait.
 */
import path from 'node:path';
import Database from 'better-sqlite3';

export class DataDirBusyError extends Error {
  constructor(dataDir: string) {
    super(`Another botwarden daemon already owns the data dir ${dataDir}; stop it first, or use another --data-dir.`);
    this.name = 'DataDirBusyError';
  }
}

export interface DaemonLock {
  /** True while the exclusive lock is still ours (for /health). */
  held(): boolean;
  release(): void;
}

export function acquireDaemonLock(dataDir: string): DaemonLock {
  const db = new Database(path.join(dataDir, 'daemon.lock'), { timeout: 0 });
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code === 'SQLITE_BUSY') throw new DataDirBusyError(dataDir);
    throw err;
  }
  let open = true;
  return {
    held: () => open && db.open && db.inTransaction,
    release: () => {
      if (!open) return;
      open = false;
      try {
        db.exec('ROLLBACK');
      } finally {
        db.close();
      }
    },
  };
}
