import { describe, expect, it } from 'vitest';
import { AgentGateError } from '../../src/errors.js';
import { loadConfig } from '../../src/schemas/config.js';

describe('queue configuration', () => {
  it('reads AGENTGATE_REQUEUE_INTERRUPTED and AGENTGATE_RECONCILE_INTERVAL_MS, leaving them unset by default', () => {
    expect(loadConfig({ HOME: '/home/dev' })).not.toHaveProperty('requeueInterrupted');
    expect(loadConfig({ HOME: '/home/dev', AGENTGATE_REQUEUE_INTERRUPTED: 'TRUE', AGENTGATE_RECONCILE_INTERVAL_MS: '5000' })).toMatchObject({
      requeueInterrupted: true,
      reconcileIntervalMs: 5000,
    });
    expect(loadConfig({ HOME: '/home/dev', AGENTGATE_REQUEUE_INTERRUPTED: 'true' }, { requeueInterrupted: false }).requeueInterrupted).toBe(false);
  });

  it('names the variable of a bad value', () => {
    const bad = (): unknown => loadConfig({ HOME: '/home/dev', AGENTGATE_REQUEUE_INTERRUPTED: 'maybe', AGENTGATE_RECONCILE_INTERVAL_MS: '10' });
    expect(bad).toThrow(AgentGateError);
    expect(bad).toThrow(/AGENTGATE_REQUEUE_INTERRUPTED: expected true or false, got "maybe"; AGENTGATE_RECONCILE_INTERVAL_MS: expected milliseconds between 1000 and 86400000/);
  });
});
