/** The API token: BOTWARDEN_TOKEN, or one generated once into <data-dir>/api-token (mode 0600). */
import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export function ensureToken(dataDir: string, fromEnv: string | undefined): { token: string; file: string | null } {
  if (fromEnv !== undefined) return { token: fromEnv, file: null };
  const file = path.join(dataDir, 'api-token');
  try {
    const token = readFileSync(file, 'utf8').trim();
    if (token.length >= 16) {
      if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
      return { token, file };
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const token = randomBytes(32).toString('base64url');
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return { token, file };
}

/** For clients (CLI, tests): the token a daemon on this data dir uses. */
export function readToken(dataDir: string, fromEnv: string | undefined): string | null {
  if (fromEnv) return fromEnv;
  try {
    return readFileSync(path.join(dataDir, 'api-token'), 'utf8').trim() || null;
  } catch {
    return null;
  }
}
