/**
 * What each service expects, and a message that reads well on a phone: what
 * happened, to which account, on which daemon, and what to do.
 */
import type { AlertTarget } from '../config/schema.js';
import type { BotwardenEvent } from '../events/types.js';

export interface Outgoing {
  headers: Record<string, string>;
  body: string;
}

const ADVICE: Record<string, string> = {
  'bot.fatal': 'It will not restart by itself: read its last output, fix the cause, then start it.',
  'bot.backoff': 'It exited and will be restarted after the delay.',
  'bot.stopping': 'It is being stopped.',
  'duplicate.detected': 'A copy of this bot runs outside botwarden: find who started it.',
  'duplicate.killed': 'A copy started by hand was killed: check your shells, cron jobs and other machines.',
  'duplicate.suspected': 'The output says another instance trades somewhere: check your other machines.',
  'nonce.error': 'The exchange rejected a nonce or the API key: if it repeats, the key is rotated.',
  'key.rotated': 'The key cools down; the bot continues on the next key. Check nothing else uses the old key.',
  'disk.low': 'Free some space on the data dir\'s disk.',
};

/** How each nonce-error cause opens an alert (SPEC 17). */
const DIAGNOSIS_LEAD: Record<string, string> = {
  clock: "the exchange rejects this bot's requests because of the clock",
  'shared-key': 'its API key is used by another process too',
  'key-rejected': 'the exchange rejects its API key',
  unknown: 'repeated nonce errors of unknown cause',
};

const str = (v: unknown): string => (typeof v === 'string' ? v : v === null || v === undefined ? '-' : JSON.stringify(v));

/** How each lastExit.cause reads on a phone (SPEC 16). */
const CAUSE_TEXT: Record<string, string> = {
  exit: 'exited by itself',
  stopped: 'was stopped by botwarden',
  'killed-outside': 'was killed by a signal botwarden did not send',
  oom: 'was killed by the kernel OOM killer (out of memory)',
  'spawn-failed': 'could not be started',
};

function exitCause(x: { cause?: string | null; reason?: string | null }): string {
  if (!x.cause) return '';
  return `${CAUSE_TEXT[x.cause] ?? x.cause}${x.cause === 'stopped' && x.reason ? ` (${x.reason})` : ''}, `;
}

function describe(e: BotwardenEvent): string {
  const f = e as Record<string, unknown>;
  switch (e.type as string) {
    case 'bot.fatal': {
      const exit = f.lastExit as { code: number | null; signal: string | null; cause?: string | null; reason?: string | null } | undefined;
      const tail = Array.isArray(f.lastLines) && f.lastLines.length ? `\nLast output:\n${(f.lastLines as string[]).join('\n')}` : '';
      return `went FATAL (${str(f.reason)})${exit ? `; last exit: ${exitCause(exit)}code ${exit.code ?? '?'}${exit.signal ? `, signal ${exit.signal}` : ''}` : ''}.${tail}`;
    }
    case 'bot.exited': {
      const cause = typeof f.cause === 'string' ? f.cause : 'exit';
      return `${CAUSE_TEXT[cause] ?? 'exited'}: pid ${str(f.pid)}, code ${f.code === null || f.code === undefined ? '?' : str(f.code)}${f.signal ? `, signal ${str(f.signal)}` : ''}.`;
    }
    case 'duplicate.killed':
      return `a duplicate instance was killed: pid ${str(f.pid)}${f.forced ? ' (SIGKILL needed)' : ''}${f.cmdline ? `: ${str(f.cmdline)}` : ''}.`;
    case 'duplicate.detected':
      return `a duplicate instance was found: pid ${str(f.pid)} (policy ${str(f.policy)})${f.cmdline ? `: ${str(f.cmdline)}` : ''}.`;
    case 'nonce.error':
      return `nonce / API-key error on key ${(f.keyId === null || f.keyId === undefined ? '-' : str(f.keyId))} (${str(f.inWindow)} in window): ${str(f.line)}`;
    case 'key.rotated':
      return `key rotated from ${str(f.from)} to ${(f.to === null || f.to === undefined ? 'none left' : str(f.to))}.`;
    case 'bot.stopping':
      return `is stopping (reason ${str(f.reason)}).`;
    case 'nonce.diagnosis':
      // "Binance rejects kraken-main's requests: this machine's clock is 2.4 s ahead of Binance ..."
      return `${DIAGNOSIS_LEAD[str(f.cause)] ?? 'nonce errors'}: ${str(f.evidence)}`;
    case 'test':
      return 'test message from botwarden: this alert target works.';
    default: {
      const { id: _i, type: _t, at: _a, account: _c, ...rest } = f;
      return `${e.type} ${JSON.stringify(rest)}`;
    }
  }
}

/** The plain text of an alert (folded repeats say how many there were). */
export function alertText(e: BotwardenEvent, daemon: string, count: number): string {
  const who = e.account ? `Account ${e.account}` : 'botwarden';
  const times = count > 1 ? ` (${count} times since the last message)` : '';
  const advice = ADVICE[e.type] ? `\n${ADVICE[e.type]}` : '';
  return `[${daemon}] ${who}: ${describe(e)}${times}${advice}`;
}

function cut(s: string, max: number): string {
  return s.length <= max ? s : s.slice(0, max - 1) + '…';
}

export function render(t: AlertTarget, e: BotwardenEvent, daemon: string, count: number): Outgoing {
  const text = alertText(e, daemon, count);
  const json = (o: unknown): Outgoing => ({ headers: { 'content-type': 'application/json' }, body: JSON.stringify(o) });
  switch (t.format) {
    case 'generic':
      return json({ event: { ...e, count }, text, daemon });
    case 'slack':
      return json({ text });
    case 'discord':
      return json({ content: cut(text, 2000) });
    case 'telegram':
      return json({ chat_id: t.chatId, text: cut(text, 4096) });
    case 'ntfy': {
      const urgent = e.type === 'bot.fatal' || e.type.startsWith('duplicate.') || e.type === 'key.rotated';
      const title = `botwarden ${daemon}: ${e.type}${e.account ? ` ${e.account}` : ''}`;
      // Header values must be ASCII.
      return { headers: { 'content-type': 'text/plain; charset=utf-8', Title: title.replace(/[^\x20-\x7e]/g, '?'), Priority: urgent ? 'high' : 'default' }, body: text };
    }
  }
}

/** A webhook URL as it may be shown: scheme and host only. */
export function maskUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}/***`;
  } catch {
    return '***';
  }
}
