/** The driver options of a resolved task (validated at submission, passed to the driver per build). */
import type { AgentOptions } from '../agents/types.js';
import type { ResolvedTaskSpec } from '../schemas/resolve.js';

export function agentOptionsOf(agent: ResolvedTaskSpec['agent']): AgentOptions {
  return {
    ...(agent.command !== undefined && { command: agent.command }),
    ...(agent.model !== undefined && { model: agent.model }),
    ...(agent.maxTurns !== undefined && { maxTurns: agent.maxTurns }),
    ...(agent.allowedTools !== undefined && { allowedTools: agent.allowedTools }),
    ...(agent.baseUrl !== undefined && { baseUrl: agent.baseUrl }),
  };
}
