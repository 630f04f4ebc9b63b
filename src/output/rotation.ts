/**
 * Keeps a bot's log file bounded: past `maxBytes` it is rotated to
 * `<log>.1` .. `<log>.N`. The bot holds the file open in append mode and
 * cannot be asked to reopen it, so the file is never renamed: its scanned
 * head is copied out and cut off.
 */
import { collapseHead } from '../host/tools.js';
import { appendFileSync, closeSync, copyFileSync, existsSync, fstatSync, ftruncateSync, openSync, renameSync, rmSync, statfsSync, truncateSync } from 'node:fs';

/** The reader of the live file, as rotation sees it. */
export interface ScannedFile {
  /** Bytes read and scanned so far; rotation moves it back when it cuts the head of the file. */
  offset: number;
  /** Reads and scans `fd` from `offset` up to `end`, handing each piece to `copy` before it is scanned. */
  scanTo(fd: number, end: number, copy: (bytes: Buffer) => void): void;
}

export interface RotationOptions {
  maxBytes: number;
  /** Rotated files kept: <log>.1 (newest) .. <log>.N. */
  files: number;
  /** Told about a failed rotation (it is retried on a later read). */
  onError?: (what: string, err: unknown) => void;
  /** False: copy-then-truncate even where collapse-range would work. */
  collapse?: boolean;
}

/**
 * Rotation without losing a line, though the bot keeps its file open in append mode:
 * - Where the filesystem can (ext4, xfs), the scanned whole blocks are copied to `<log>.1` and
 *   then cut from the head of the live file with fallocate's collapse-range. The kernel
 *   serialises that with the bot's appends, so no write can fall between copy and cut.
 * - Elsewhere (tmpfs, btrfs, no fallocate), copy-then-truncate: the copy is cut back to what was
 *   scanned, what the bot appended since is scanned and added to it in a loop, and the live file
 *   is truncated right after the last read. Only a write landing between that read and the
 *   ftruncate call itself is lost (docs/operations.md gives the measured figure).
 */
export class LogRotation {
  private collapse: boolean;

  constructor(
    readonly path: string,
    private readonly opts: RotationOptions,
  ) {
    this.collapse = opts.collapse ?? true;
  }

  /** The file has grown past the rotation size. */
  due(file: ScannedFile): boolean {
    return file.offset > this.opts.maxBytes;
  }

  /** Rotates now; false when it failed (told to onError). */
  rotate(file: ScannedFile): boolean {
    try {
      shiftRotated(this.path, this.opts.files);
      if (!(this.collapse && this.byCollapse(file))) this.byTruncate(file);
      return true;
    } catch (err) {
      // Rotation is best effort; the next read tries again.
      this.opts.onError?.('log rotation failed', err);
      return false;
    }
  }

  private byCollapse(file: ScannedFile): boolean {
    const block = statfsSync(this.path).bsize;
    const cut = Math.floor(file.offset / block) * block;
    if (cut <= 0) return false;
    const rotated = `${this.path}.1`;
    copyFileSync(this.path, rotated);
    truncateSync(rotated, cut);
    try {
      collapseHead(this.path, cut);
    } catch {
      // Not supported here (or no fallocate): say so once, then truncate from now on.
      this.collapse = false;
      this.opts.onError?.('log rotation: collapse-range unsupported on this filesystem; using copy-then-truncate', null);
      return false;
    }
    file.offset -= cut;
    return true;
  }

  private byTruncate(file: ScannedFile): void {
    let fd: number | null = null;
    try {
      const rotated = `${this.path}.1`;
      copyFileSync(this.path, rotated);
      truncateSync(rotated, file.offset);
      fd = openSync(this.path, 'r+');
      for (let i = 0; i < 100; i++) {
        const size = fstatSync(fd).size;
        if (size <= file.offset) break;
        file.scanTo(fd, size, (bytes) => appendFileSync(rotated, bytes));
      }
      ftruncateSync(fd, 0);
      file.offset = 0;
    } finally {
      if (fd !== null) closeSync(fd);
    }
  }
}

/** log.1 -> log.2 -> ... -> log.N (dropped), making room for a new log.1. */
function shiftRotated(path: string, files: number): void {
  rmSync(`${path}.${files}`, { force: true });
  for (let i = files - 1; i >= 1; i--) {
    if (existsSync(`${path}.${i}`)) renameSync(`${path}.${i}`, `${path}.${i + 1}`);
  }
}
