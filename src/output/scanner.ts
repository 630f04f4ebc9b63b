/**
 * Scanning a log file: the bytes appended since the last read, cut into
 * complete lines (a partial line waits for its end), each handed to a
 * callback. Also `lastLines`, the tail of a file for the API and alerts.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';

const MAX_LINE = 64 * 1024;
/** The largest piece one read() takes (the size of the shared read buffer). */
export const READ_CHUNK = 256 * 1024;

export class LineScanner {
  /** Bytes of the file read and scanned so far. */
  offset = 0;
  private partial = '';
  /** A multi-byte character cut by a piece's end is completed by the next piece, not garbled. */
  private decoder = new StringDecoder('utf8');
  /** Held open while the bot writes (see read). */
  private fd: number | null = null;

  constructor(
    readonly path: string,
    /** Shared with other scanners: reads are synchronous, so they never overlap. */
    private readonly buf: Buffer,
    private readonly onLine: (line: string) => void,
    private readonly onError?: (what: string, err: unknown) => void,
  ) {}

  /** Starts at the current end of the file (old lines are not rescanned). */
  skipToEnd(): void {
    this.offset = sizeOf(this.path);
  }

  /**
   * Reads the appended bytes in pieces of at most `maxPiece`, calling `afterPiece` after each
   * (rotation hooks in there). The file stays open between reads until `release`. Returns the
   * bytes read, or null when the file could not be opened or read (it is closed then).
   */
  read(maxPiece: number, afterPiece: () => void): number | null {
    const fd = this.openFd();
    if (fd === null) return null;
    const len = Math.min(this.buf.length, maxPiece);
    try {
      let got = 0;
      for (;;) {
        const n = this.piece(fd, len);
        if (n <= 0) break;
        got += n;
        afterPiece();
        // A regular file reads short only at its end: no second read() to learn that.
        if (n < len) break;
      }
      return got;
    } catch {
      this.close();
      return null;
    }
  }

  /** Reads and scans `fd` from `offset` up to `end`, handing each piece to `copy` before it is scanned. */
  scanTo(fd: number, end: number, copy: (bytes: Buffer) => void): void {
    while (this.offset < end) {
      if (this.piece(fd, Math.min(this.buf.length, end - this.offset), copy) <= 0) break;
    }
  }

  /** Nothing new: lets go of the file (a quiet file holds no descriptor), saying whether it was truncated under us. */
  release(): boolean {
    if (this.fd === null) return false;
    try {
      return fstatSync(this.fd).size < this.offset;
    } catch {
      return false;
    } finally {
      this.close();
    }
  }

  /** The file was truncated by someone else: scan it again from its start. */
  restart(): void {
    this.offset = 0;
    this.partial = '';
    this.decoder = new StringDecoder('utf8');
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  /** Hands over the unterminated last line (the tailing stops). */
  flush(): void {
    if (!this.partial) return;
    this.emit(this.partial);
    this.partial = '';
  }

  private piece(fd: number, len: number, copy?: (bytes: Buffer) => void): number {
    const n = readSync(fd, this.buf, 0, len, this.offset);
    if (n <= 0) return n;
    copy?.(this.buf.subarray(0, n));
    this.offset += n;
    this.consume(this.decoder.write(this.buf.subarray(0, n)));
    return n;
  }

  private openFd(): number | null {
    if (this.fd === null) {
      try {
        this.fd = openSync(this.path, 'r');
      } catch {
        return null;
      }
    }
    return this.fd;
  }

  private consume(text: string): void {
    const parts = (this.partial + text).split('\n');
    this.partial = parts.pop() ?? '';
    for (const line of parts) this.emit(line.endsWith('\r') ? line.slice(0, -1) : line);
    // An endless line is cut at MAX_LINE, after the complete lines before it (order kept).
    if (this.partial.length > MAX_LINE) {
      this.emit(this.partial);
      this.partial = '';
    }
  }

  private emit(line: string): void {
    try {
      this.onLine(line.length > MAX_LINE ? line.slice(0, MAX_LINE) : line);
    } catch (err) {
      // A scanner's bug must not stop the tailing, but it is told.
      this.onError?.('a line handler threw', err);
    }
  }
}

function sizeOf(path: string): number {
  try {
    const fd = openSync(path, 'r');
    try {
      return fstatSync(fd).size;
    } finally {
      closeSync(fd);
    }
  } catch {
    return 0;
  }
}

/** The last `n` lines of a file (reading backwards in chunks, not the whole file). */
export function lastLines(path: string, n: number): string {
  if (n <= 0) return '';
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return '';
  }
  try {
    const size = fstatSync(fd).size;
    let pos = size;
    let chunks: Buffer[] = [];
    let newlines = 0;
    let total = 0;
    while (pos > 0 && newlines <= n) {
      const len = Math.min(64 * 1024, pos);
      pos -= len;
      const b = Buffer.allocUnsafe(len);
      readSync(fd, b, 0, len, pos);
      for (let i = 0; i < len; i++) if (b[i] === 10) newlines++;
      chunks.unshift(b);
      total += len;
      if (total > 64 * 1024 * 1024) break;
    }
    let text = Buffer.concat(chunks).toString('utf8');
    chunks = [];
    if (text.endsWith('\n')) text = text.slice(0, -1);
    const lines = text.split('\n');
    return lines.slice(Math.max(0, lines.length - n)).join('\n') + (lines.length > 0 && text !== '' ? '\n' : '');
  } finally {
    closeSync(fd);
  }
}
