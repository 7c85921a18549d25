/**
 * Prometheus metrics (SPEC 11), fed only by event-hub events so they count exactly what the
 * durable log records. The registry is what `GET /metrics` will serve; `render()` gives the text format.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ProgressEnvelope } from './events.js';
import type { RunEventEnvelope } from './events.js';

/** What metrics subscribe to: the event hub's synchronous in-process listener. */
export interface RunEventSource {
  on(listener: (event: RunEventEnvelope) => void): () => void;
}

export interface MetricsOptions {
  /** Also collect Node.js process metrics (off in tests: they are global). */
  processMetrics?: boolean;
}

export class Metrics {
  readonly registry = new Registry();
  readonly runsStarted = new Counter({ name: 'agentgate_runs_started_total', help: 'Runs started', registers: [this.registry] });
  readonly runsCompleted = new Counter({ name: 'agentgate_runs_completed_total', help: 'Runs finished, by result', labelNames: ['result'] as const, registers: [this.registry] });
  readonly iterations = new Counter({ name: 'agentgate_iterations_total', help: 'Iterations completed', registers: [this.registry] });
  readonly runDuration = new Histogram({
    name: 'agentgate_run_duration_seconds',
    help: 'Run duration',
    // Agent runs take minutes to an hour.
    buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600],
    registers: [this.registry],
  });
  readonly phaseDuration = new Histogram({
    name: 'agentgate_phase_duration_seconds',
    help: 'Phase duration, by phase',
    labelNames: ['phase'] as const,
    buckets: [0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900],
    registers: [this.registry],
  });
  readonly activeRuns = new Gauge({ name: 'agentgate_active_runs', help: 'Runs in progress', registers: [this.registry] });
  readonly queueDepth = new Gauge({ name: 'agentgate_queue_depth', help: 'Work orders waiting to run', registers: [this.registry] });
  readonly wsConnections = new Gauge({ name: 'agentgate_ws_connections', help: 'Open WebSocket connections', registers: [this.registry] });
  readonly agentCost = new Counter({ name: 'agentgate_agent_cost_usd_total', help: 'Agent cost reported by the agents, in USD', registers: [this.registry] });
  readonly agentTokens = new Counter({
    name: 'agentgate_agent_tokens_total',
    help: 'Agent tokens reported by the agents, by direction',
    labelNames: ['direction'] as const,
    registers: [this.registry],
  });
  readonly agentTurns = new Counter({ name: 'agentgate_agent_turns_total', help: 'Agent turns reported by the agents', registers: [this.registry] });

  constructor(options: MetricsOptions = {}) {
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry });
  }

  /** Subscribes to the hub; returns the unsubscribe function. */
  attach(hub: RunEventSource): () => void {
    return hub.on((event) => this.observe(event));
  }

  observe(event: ProgressEnvelope): void {
    switch (event.type) {
      case 'run_started':
        this.runsStarted.inc();
        this.activeRuns.inc();
        break;
      case 'run_completed':
      case 'run_failed':
      case 'run_canceled': {
        const data = event.data as ProgressEnvelope<'run_completed' | 'run_failed' | 'run_canceled'>['data'];
        this.runsCompleted.inc({ result: 'result' in data ? data.result : 'canceled' });
        this.runDuration.observe(data.durationMs / 1000);
        this.activeRuns.dec();
        break;
      }
      case 'iteration_completed': {
        const data = event.data as ProgressEnvelope<'iteration_completed'>['data'];
        this.iterations.inc();
        if (data.agent) {
          this.agentTokens.inc({ direction: 'input' }, data.agent.inputTokens);
          this.agentTokens.inc({ direction: 'output' }, data.agent.outputTokens);
          this.agentCost.inc(data.agent.costUsd);
          this.agentTurns.inc(data.agent.turns);
        }
        break;
      }
      case 'phase_completed': {
        const data = event.data as ProgressEnvelope<'phase_completed'>['data'];
        this.phaseDuration.observe({ phase: data.phase }, data.durationMs / 1000);
        break;
      }
      default:
        break;
    }
  }

  /** Prometheus text exposition format. */
  render(): Promise<string> {
    return this.registry.metrics();
  }
}
