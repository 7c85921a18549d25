/**
 * BuildPhase: runs the agent once with the task prompt, the previous iteration's feedback and session.
 * Agent exit ≠ 0, an error result, a crash or a timeout is a build failure with the driver's
 * classification (agent_crash | agent_timeout | agent_task_failure), carried by the error code.
 */
import { agentEnv } from '../../util/secrets.js';
import { agentOptionsOf } from '../agent-options.js';
import { describeGatePlan } from '../../gates/loader.js';
import type { AgentRequest } from '../../agents/types.js';
import type { BuildOutput, PhaseContext, PhaseHandler, PhaseResult } from '../context.js';

/** What the agent is told about the gates (drivers with a system prompt use it). */
function gateSummary(ctx: PhaseContext): string {
  const plan = ctx.progress.plan;
  return plan === undefined ? 'Your change is accepted only when the repository\'s verification gates pass.' : describeGatePlan(plan);
}

export class BuildPhase implements PhaseHandler<'build'> {
  readonly name = 'build' as const;

  async execute(ctx: PhaseContext): Promise<PhaseResult<BuildOutput>> {
    const { spec } = ctx;
    const driver = ctx.services.agents.get(spec.agent.driver);
    const request: AgentRequest = {
      runId: ctx.runId,
      workOrderId: ctx.workOrderId,
      iteration: ctx.iteration,
      prompt: spec.prompt,
      feedback: ctx.iteration === 1 ? '' : ctx.progress.feedback,
      workspacePath: ctx.workspace.path,
      artifactsDir: ctx.artifactsDir,
      deadline: ctx.deadline,
      idleTimeoutMs: spec.agent.idleTimeoutMs,
      env: agentEnv(ctx.services.baseEnv, spec.agent.env),
      options: agentOptionsOf(spec.agent),
      gateSummary: gateSummary(ctx),
      ...(ctx.progress.sessionId !== undefined && { sessionId: ctx.progress.sessionId }),
    };
    const result = await driver.run(request, { signal: ctx.signal, emit: ctx.emit, clock: ctx.clock });
    if (result.ok) return { ok: true, value: { agent: result } };
    const { error, aborted, ...summary } = result;
    return { ok: false, error, cancelled: aborted || ctx.signal.aborted, agent: summary };
  }
}
