/** The AgentDriver registry: built-ins, lookup, option validation and registration. */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { CommandAgentDriver, type CommandAgentDriverConfig } from '../../src/agents/command.js';
import { BUILTIN_AGENT_DRIVERS, createAgentDriverRegistry } from '../../src/agents/registry.js';
import type { AgentDriver } from '../../src/agents/types.js';
import { systemClock } from '../../src/util/clock.js';
import { agentEnv } from '../../src/util/secrets.js';
import { agentOutputs, recordingEmit } from './conformance.js';

describe('createAgentDriverRegistry', () => {
  const fakeDriver = (name: string): AgentDriver => ({
    name,
    run: () => Promise.resolve({ ok: true, exitCode: 0, durationMs: 0, toolCalls: 0, output: '' }),
  });

  it('holds the built-in command driver and returns the same instance each time', () => {
    const registry = createAgentDriverRegistry();

    expect(registry.names()).toEqual(Object.keys(BUILTIN_AGENT_DRIVERS).sort());
    expect(registry.get('command')).toBeInstanceOf(CommandAgentDriver);
    expect(registry.get('command')).toBe(registry.get('command'));
  });

  it('rejects an unknown agent with AG_ERR_AGENT_UNKNOWN listing the known names', () => {
    const registry = createAgentDriverRegistry();
    registry.register('my-agent', () => fakeDriver('my-agent'));

    expect(() => registry.get('claude')).toThrow(expect.objectContaining({ code: 'AG_ERR_AGENT_UNKNOWN', message: 'Unknown agent "claude"; known agents: claude-code, codex, command, my-agent.' }));
  });

  it('validates options through the driver: the command driver needs a command', () => {
    const registry = createAgentDriverRegistry();

    expect(() => registry.validate('command', {})).toThrow(expect.objectContaining({ code: 'AG_ERR_CONFIG_INVALID' }));
    expect(() => registry.validate('command', { command: '   ' })).toThrow(expect.objectContaining({ code: 'AG_ERR_CONFIG_INVALID' }));
    expect(() => registry.validate('command', { command: 'my-agent --yes' })).not.toThrow();
    expect(() => registry.validate('codex-x', { command: 'x' })).toThrow(expect.objectContaining({ code: 'AG_ERR_AGENT_UNKNOWN' }));
  });

  it('registers more drivers but refuses a duplicate or malformed name', () => {
    const registry = createAgentDriverRegistry({ builtins: false });
    const factory = vi.fn(() => fakeDriver('scripted'));

    registry.register('scripted', factory);

    expect(registry.names()).toEqual(['scripted']);
    expect(factory).not.toHaveBeenCalled();
    expect(registry.get('scripted').name).toBe('scripted');
    expect(() => registry.register('scripted', factory)).toThrow(expect.objectContaining({ code: 'AG_ERR_CONFIG_INVALID' }));
    expect(() => registry.register('Bad Name', factory)).toThrow(expect.objectContaining({ code: 'AG_ERR_CONFIG_INVALID' }));
  });

  it('refuses a factory whose driver has another name', () => {
    const registry = createAgentDriverRegistry({ builtins: false });
    registry.register('alpha', () => fakeDriver('beta'));

    expect(() => registry.get('alpha')).toThrow(expect.objectContaining({ code: 'AG_ERR_INTERNAL' }));
  });

  it('hands its configuration to the built-in command driver', async () => {
    const config: CommandAgentDriverConfig = { secretEnv: { AGENTGATE_API_KEY: 'configured-secret-42' } };
    const registry = createAgentDriverRegistry({ config: { command: config } });
    const workspacePath = await mkdtemp(path.join(os.tmpdir(), 'agentgate-registry-'));
    try {
      const { emit, events } = recordingEmit();
      await registry.get('command').run(
        {
          runId: 'r',
          workOrderId: 'w',
          iteration: 1,
          prompt: 'p',
          feedback: '',
          workspacePath,
          artifactsDir: path.join(workspacePath, '.artifacts'),
          idleTimeoutMs: 60_000,
          env: agentEnv(process.env),
          options: { command: 'echo configured-secret-42' },
        },
        { signal: new AbortController().signal, emit, clock: systemClock },
      );
      expect(agentOutputs(events).map((o) => o.text)).toEqual(['[REDACTED]']);
    } finally {
      await rm(workspacePath, { recursive: true, force: true });
    }
  });
});
