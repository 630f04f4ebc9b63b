/**
 * The two system tools botwarden runs besides bots: util-linux's fallocate (log rotation without
 * a copy) and systemd's timedatectl (is the clock NTP-synchronised). Synchronous and bounded.
 */
import { execFileSync, spawnSync } from 'node:child_process';

/** Cuts `length` bytes from the head of a file in place (FALLOC_FL_COLLAPSE_RANGE); throws where unsupported. */
export function collapseHead(file: string, length: number): void {
  execFileSync('fallocate', ['--collapse-range', '--offset', '0', '--length', String(length), file], { stdio: 'ignore', timeout: 5000 });
}

/** timedatectl's NTPSynchronized: true or false where systemd tells, null elsewhere. */
export function ntpSynchronized(): boolean | null {
  try {
    const out = spawnSync('timedatectl', ['show', '--property=NTPSynchronized', '--value'], { encoding: 'utf8', timeout: 1000 });
    const v = out.status === 0 ? out.stdout.trim() : '';
    return v === 'yes' ? true : v === 'no' ? false : null;
  } catch {
    return null;
  }
}
