/**
 * A daemon identity two machines cannot share (PostgreSQL mode). A lease row
 * left by an earlier run of *this* daemon may be judged against local /proc
 * (its bots died with it); any other daemon's row must run out on the database
 * clock. Name and hostname cannot tell the two apart: a config file copied to
 * two machines, a fixed container `hostname:` or a cloned image give both the
 * same. The identity is a random id created once in the data dir
 * (`daemon-id`, mode 0600), mixed with the machine id (/etc/machine-id) when
 * there is one: a data dir copied to another machine, or a cloned machine with
 * its own data dir, is another daemon.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const ID = /^[0-9a-f]{32}$/;

function readId(file: string): string | null {
  try {
    const id = readFileSync(file, 'utf8').trim();
    return ID.test(id) ? id : null;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** The data dir's own random id, created on first use. */
export function dataDirId(dataDir: string): string {
  const file = path.join(dataDir, 'daemon-id');
  const id = readId(file);
  if (id !== null) return id;
  const fresh = randomBytes(16).toString('hex');
  // An unreadable or damaged file is replaced: a new id only makes old rows "not ours" (they expire).
  writeFileSync(file, fresh + '\n', { mode: 0o600 });
  return fresh;
}

export function machineId(files: readonly string[] = ['/etc/machine-id', '/var/lib/dbus/machine-id']): string {
  for (const f of files) {
    try {
      const id = readFileSync(f, 'utf8').trim();
      if (id) return id;
    } catch {
      // absent (many containers): the data dir's id alone
    }
  }
  return '';
}

/** The identity written on every lease this daemon is granted (`holder_uid`). */
export function daemonUid(dataDir: string, machine: string = machineId()): string {
  return createHash('sha256').update(`${machine}\0${dataDirId(dataDir)}`).digest('hex').slice(0, 32);
}
