/**
 * Output lines that betray a second instance somewhere (Telegram's getUpdates
 * conflict, "Duplicate order sent", OKX 51016): `duplicate.suspected`. At most
 * one event per account and pattern per quiet period, with the count of the
 * lines it stands for, so a bot repeating the line every second does not
 * flood the event store.
 */
import type { EventStore } from '../events/store.js';
import { SUSPECT_PATTERNS, sanitizeLine } from '../output/patterns.js';

export class SuspectScanner {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly events: EventStore,
    private readonly secrets: () => readonly string[],
    private readonly quietMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  onLine(account: string, line: string): void {
    for (const { name, re } of SUSPECT_PATTERNS) {
      if (!re.test(line)) continue;
      const k = `${account}\0${name}`;
      const prev = this.last.get(k);
      const t = this.now();
      if (prev && t - prev.at < this.quietMs) {
        prev.suppressed++;
        return;
      }
      this.last.set(k, { at: t, suppressed: 0 });
      this.events.emit('duplicate.suspected', { account, pattern: name, line: sanitizeLine(line, this.secrets()), repeats: prev?.suppressed ?? 0 });
      return;
    }
  }
}
