/**
 * The state-keeping half of a bot controller: the current state, the one
 * `changeState` (checked against the transition table, persisted, logged,
 * emitted), the operation queue and the pending timer.
 */
import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../clock.js';
import type { BotRow, Registry } from '../db/registry.js';
import { isDiskFull } from '../errors.js';
import type { EventStore } from '../events/store.js';
import { assertTransition, STATE_EVENT, type BotState } from './states.js';

export abstract class BotMachine {
  protected current: BotState = 'stopped';
  protected timer: TimerHandle | null = null;
  private queue: Promise<unknown> = Promise.resolve();

  protected constructor(
    readonly id: string,
    protected readonly log: Logger,
    private readonly eventStore: EventStore,
    private readonly rows: Registry,
    protected readonly clock: Clock,
  ) {}

  get state(): BotState {
    return this.current;
  }

  /** The bot's row as it is persisted with every state change. */
  protected abstract record(state: BotState): BotRow;

  /** Operations on one account run one at a time, in order; a failed one does not block the next. */
  protected serialize<T>(op: () => Promise<T>): Promise<T> {
    const run = this.queue.then(op, op);
    this.queue = run.catch(() => undefined);
    return run;
  }

  protected cancelTimer(): void {
    this.timer?.cancel();
    this.timer = null;
  }

  /** A full disk does not stop the state machine: the state lives on in memory and is saved at the next change. */
  protected persist(state: BotState): void {
    try {
      this.save(state);
    } catch (err) {
      if (!isDiskFull(err)) throw err;
      this.log.error({ err, state }, 'the disk is full: the bot state could not be saved (kept in memory)');
    }
  }

  private save(state: BotState): void {
    this.rows.saveBot(this.record(state), new Date(this.clock.now()).toISOString());
  }

  /** The one place a bot's state changes: checked, persisted, logged, emitted. */
  protected changeState(to: BotState, fields: Record<string, unknown> = {}, emit = true): void {
    const from = this.current;
    assertTransition(this.id, from, to);
    this.current = to;
    this.log.info({ from, to, ...fields }, `bot ${from} -> ${to}`);
    if (!emit) return this.persist(to);
    // The new state and its event are stored in one transaction. On a full disk the event store
    // counts the lost event and the state lives on in memory, saved at the next change.
    this.eventStore.emit(STATE_EVENT[to], { account: this.id, from, ...fields }, () => this.save(to));
  }
}
