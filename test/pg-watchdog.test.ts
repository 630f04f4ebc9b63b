/** The watchdog's group list in PostgreSQL mode: every bot's process tree with its lease's kill deadline. */
import { describe, expect, it } from 'vitest';
import { watchedGroups } from '../src/pg-mode.js';
import type { BotController } from '../src/supervisor/bot.js';

type FakeBot = { id: string; live: { pgid: number; startTicks: number | null } | null; tree?: { pgid: number; startTicks: number | null } | null };

function locksWith(deadlines: Record<string, number>) {
  const gone: string[] = [];
  return {
    gone,
    killDeadline: (a: string) => deadlines[a] ?? null,
    processGone: (a: string) => {
      gone.push(a);
      delete deadlines[a];
    },
  };
}

const bots = (b: FakeBot[]) => b as unknown as BotController[];

describe('watched groups', () => {
  it("lists a bot's tree from its spawn (tree set, no live instance yet) with its deadline", () => {
    const locks = locksWith({ pga: 5000 });
    expect(watchedGroups(bots([{ id: 'pga', live: null, tree: { pgid: 42, startTicks: 7 } }]), locks)).toEqual([{ pgid: 42, startTicks: 7, killAt: 5000 }]);
  });

  it('falls back to the live instance when the controller has no tree getter', () => {
    const locks = locksWith({ pga: 5000 });
    expect(watchedGroups(bots([{ id: 'pga', live: { pgid: 43, startTicks: 8 } }]), locks)).toEqual([{ pgid: 43, startTicks: 8, killAt: 5000 }]);
  });

  it("keeps a lost lease's deadline while the tree lives, and lets it go once the tree is gone", () => {
    const locks = locksWith({ pga: 4000 });
    const bot: FakeBot = { id: 'pga', live: null, tree: { pgid: 44, startTicks: 9 } };
    expect(watchedGroups(bots([bot]), locks)).toHaveLength(1);
    expect(locks.gone).toEqual([]);
    bot.tree = null;
    expect(watchedGroups(bots([bot]), locks)).toEqual([]);
    expect(locks.gone).toEqual(['pga']);
  });
});
