/** What a fatal bot's alert adds: its last exit and the last lines of its output, masked. */
import type { BotwardenEvent } from '../events/types.js';
import { lastLines } from '../output/tailer.js';
import type { Supervisor } from '../supervisor/supervisor.js';

export function fatalFacts(supervisor: Supervisor, mask: (text: string) => string, e: BotwardenEvent): Record<string, unknown> {
  if (e.type !== 'bot.fatal' || e.account === undefined) return {};
  try {
    const bot = supervisor.get(e.account);
    const lines = mask(lastLines(bot.logPath, 5)).split('\n').filter((l) => l !== '');
    return { lastExit: bot.view().lastExit, lastLines: lines.map((l) => (l.length > 300 ? l.slice(0, 300) + '…' : l)) };
  } catch {
    return {}; // the account was removed by a reload: the alert goes without the facts
  }
}
