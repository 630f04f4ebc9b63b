/** Output for people: aligned tables, human durations, state colours on a TTY unless NO_COLOR. */
export function useColor(stream: NodeJS.WriteStream = process.stdout): boolean {
  return stream.isTTY === true && !('NO_COLOR' in process.env) && process.env.TERM !== 'dumb';
}

const COLORS: Record<string, number> = { running: 32, starting: 36, stopping: 33, backoff: 33, fatal: 31, stopped: 90, ok: 32, degraded: 33, failing: 31, free: 32, leased: 36, cooling: 33, missing: 31 };

export function paint(text: string, key: string, color: boolean): string {
  const c = COLORS[key];
  return color && c !== undefined ? `\x1b[${c}m${text}\x1b[0m` : text;
}

/** 93 s -> "1m33s", 26 h -> "1d2h". */
export function human(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '-';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${s % 60 ? `${s % 60}s` : ''}`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h${m % 60 ? `${m % 60}m` : ''}`;
  const d = Math.floor(h / 24);
  return `${d}d${h % 24 ? `${h % 24}h` : ''}`;
}

export function since(iso: string | null | undefined, now = Date.now()): string {
  return iso ? human(now - Date.parse(iso)) : '-';
}

/** Columns padded to their widest cell; `colorKey` picks which cells get a state colour. */
export function table(head: string[], rows: string[][], color: boolean, colorCols: number[] = []): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[], isHead: boolean) =>
    cells
      .map((c, i) => {
        const padded = i === cells.length - 1 ? c : c.padEnd(widths[i]!);
        return !isHead && colorCols.includes(i) ? paint(padded, c, color) : padded;
      })
      .join('  ')
      .trimEnd();
  return [line(head, true), ...rows.map((r) => line(r, false))].join('\n') + '\n';
}
