/**
 * Structural checks over a transition table. Runs on the real table in tests and at no other time;
 * accepts any table shape so tests can feed it deliberately broken ones.
 */
import { ALL_EVENTS, TERMINAL_STATES, TRANSITIONS } from './state-machine.js';

export type TableShape = Readonly<Record<string, Readonly<Record<string, { readonly to: string } | undefined>>>>;

export interface ValidatorInput {
  table: TableShape;
  initial: string;
  terminal: readonly string[];
  events: readonly string[];
}

export type ValidationIssue =
  | { kind: 'unreachable_state'; state: string }
  | { kind: 'dead_end'; state: string }
  | { kind: 'terminal_with_exit'; state: string; event: string }
  | { kind: 'orphan_event'; event: string }
  | { kind: 'unknown_target'; state: string; event: string; to: string };

export interface ValidationReport {
  valid: boolean;
  issues: ValidationIssue[];
}

export class StateMachineValidator {
  private readonly input: ValidatorInput;

  constructor(input?: Partial<ValidatorInput>) {
    this.input = {
      table: input?.table ?? TRANSITIONS,
      initial: input?.initial ?? 'queued',
      terminal: input?.terminal ?? TERMINAL_STATES,
      events: input?.events ?? ALL_EVENTS,
    };
  }

  private edges(state: string): Array<[string, string]> {
    const row = this.input.table[state] ?? {};
    return Object.entries(row).flatMap(([event, target]) => (target ? [[event, target.to] as [string, string]] : []));
  }

  private states(): string[] {
    return Object.keys(this.input.table);
  }

  reachableStates(): Set<string> {
    const seen = new Set<string>([this.input.initial]);
    const queue = [this.input.initial];
    for (let state = queue.shift(); state !== undefined; state = queue.shift()) {
      for (const [, to] of this.edges(state)) {
        if (!seen.has(to)) {
          seen.add(to);
          queue.push(to);
        }
      }
    }
    return seen;
  }

  findUnreachableStates(): string[] {
    const reachable = this.reachableStates();
    return this.states().filter((s) => !reachable.has(s));
  }

  /** Non-terminal states from which no terminal state can be reached. */
  findDeadEnds(): string[] {
    const terminal = new Set(this.input.terminal);
    const canFinish = new Set<string>(this.input.terminal);
    let changed = true;
    while (changed) {
      changed = false;
      for (const state of this.states()) {
        if (canFinish.has(state)) continue;
        if (this.edges(state).some(([, to]) => canFinish.has(to))) {
          canFinish.add(state);
          changed = true;
        }
      }
    }
    return this.states().filter((s) => !terminal.has(s) && !canFinish.has(s));
  }

  findTerminalWithExits(): Array<{ state: string; event: string }> {
    return this.input.terminal.flatMap((state) => this.edges(state).map(([event]) => ({ state, event })));
  }

  /** Events declared but used by no row. */
  findOrphanEvents(): string[] {
    const used = new Set(this.states().flatMap((s) => this.edges(s).map(([e]) => e)));
    return this.input.events.filter((e) => !used.has(e));
  }

  findUnknownTargets(): Array<{ state: string; event: string; to: string }> {
    const known = new Set(this.states());
    return this.states().flatMap((state) =>
      this.edges(state)
        .filter(([, to]) => !known.has(to))
        .map(([event, to]) => ({ state, event, to })),
    );
  }

  /**
   * Every simple path (no state repeated) from the initial state to a terminal state, as the list of
   * events taken. Loops (feedback → building) are walked at most once per path.
   */
  enumeratePaths(): Array<{ events: string[]; states: string[]; terminal: string }> {
    const terminal = new Set(this.input.terminal);
    const paths: Array<{ events: string[]; states: string[]; terminal: string }> = [];
    const walk = (state: string, states: string[], events: string[]): void => {
      if (terminal.has(state)) {
        paths.push({ events, states, terminal: state });
        return;
      }
      for (const [event, to] of this.edges(state)) {
        if (states.includes(to)) continue;
        walk(to, [...states, to], [...events, event]);
      }
    };
    walk(this.input.initial, [this.input.initial], []);
    return paths;
  }

  validate(): ValidationReport {
    const issues: ValidationIssue[] = [
      ...this.findUnreachableStates().map((state): ValidationIssue => ({ kind: 'unreachable_state', state })),
      ...this.findDeadEnds().map((state): ValidationIssue => ({ kind: 'dead_end', state })),
      ...this.findTerminalWithExits().map((x): ValidationIssue => ({ kind: 'terminal_with_exit', ...x })),
      ...this.findOrphanEvents().map((event): ValidationIssue => ({ kind: 'orphan_event', event })),
      ...this.findUnknownTargets().map((x): ValidationIssue => ({ kind: 'unknown_target', ...x })),
    ];
    return { valid: issues.length === 0, issues };
  }
}
