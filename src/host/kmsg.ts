/**
 * The kernel's OOM killer says whom it killed in the kernel log (/dev/kmsg, readable by root):
 *   "Out of memory: Killed process 1234 (node) total-vm:..."
 *   "Memory cgroup out of memory: Killed process 1234 (node) ..."
 *   "oom-kill:constraint=CONSTRAINT_MEMCG,...,task=node,pid=1234,uid=0"
 * A SIGKILLed bot is looked up here to tell `oom` from `killed-outside` (SPEC 16). The log is
 * read without blocking, only when asked (a SIGKILL exit), from where the last read stopped; the
 * records before the daemon started are skipped once at open. Where /dev/kmsg cannot be read (not
 * root, dmesg_restrict, a container), nothing is ever called `oom`.
 */
import { closeSync, constants, openSync, readSync } from 'node:fs';

const KILLED = /(?:Killed process|oom-kill:.*?\bpid=)\s*(\d+)/;
const REMEMBER = 256;

export class OomLog {
  private fd: number | null = null;
  private readonly killed: number[] = [];
  private readonly buf = Buffer.allocUnsafe(8192);

  constructor(private readonly path = '/dev/kmsg') {}

  /** Opens the log and skips what it holds now. False where it cannot be read. */
  open(): boolean {
    try {
      this.fd = openSync(this.path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch {
      this.fd = null;
      return false;
    }
    this.drain(false);
    return true;
  }

  /** Did the OOM killer kill this pid since the log was opened? */
  killedByOom(pid: number): boolean {
    this.drain(true);
    return this.killed.includes(pid);
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  /** Reads every record not read yet (one record per read on /dev/kmsg); EAGAIN: the end. */
  private drain(keep: boolean): void {
    if (this.fd === null) return;
    for (;;) {
      let n: number;
      try {
        n = readSync(this.fd, this.buf, 0, this.buf.length, null);
      } catch (err) {
        // EPIPE: records were overwritten before we read them; reading on resumes at the oldest.
        if ((err as NodeJS.ErrnoException).code === 'EPIPE') continue;
        return; // EAGAIN (no more records) or anything else
      }
      if (n <= 0) return;
      if (!keep) continue;
      const m = KILLED.exec(this.buf.toString('utf8', 0, n));
      if (m) {
        this.killed.push(Number(m[1]));
        if (this.killed.length > REMEMBER) this.killed.shift();
      }
    }
  }
}
