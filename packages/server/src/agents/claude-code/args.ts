/** The command line of one `claude` invocation (verified against claude 2.1.330, see docs/agents.md). */
import { composeAgentInput } from '../agent-input.js';
import type { AgentRequest } from '../types.js';
import { CLAUDE_CODE_DEFAULT_ALLOWED_TOOLS, CLAUDE_CODE_PERMISSION_MODE } from './options.js';

/** First line of the prompt of a resumed iteration; the session already holds the task. */
export const CLAUDE_CODE_FEEDBACK_LEAD = 'The verification gates failed. Fix the problems below.';

/** Appended to Claude Code's system prompt after the gate summary. */
export const CLAUDE_CODE_SYSTEM_NOTE =
  'You are running under AgentGate. When you stop, AgentGate runs the verification gates on the working tree; ' +
  'if they fail, this session is resumed with their output as feedback. Make the changes in the current directory ' +
  '(AgentGate commits them itself) and finish with a short summary of what you changed.';

/** What one claude invocation gets: its arguments and the prompt inside them. */
export interface ClaudeCodeInvocation {
  args: string[];
  prompt: string;
  /** The session resumed, when there is one. */
  resumeSessionId?: string;
}

/**
 * Builds the command line for one invocation. `resumeSessionId` is normally `request.sessionId`; the
 * driver passes undefined to start over in a new session.
 *
 * The prompt: the task on a fresh start; the feedback (under {@link CLAUDE_CODE_FEEDBACK_LEAD}) when a
 * session is resumed, since the session already holds the task; the task and the feedback together when
 * there is feedback but nothing to resume.
 */
export function buildClaudeCodeInvocation(request: Pick<AgentRequest, 'prompt' | 'feedback' | 'options' | 'gateSummary'>, resumeSessionId: string | undefined): ClaudeCodeInvocation {
  const hasFeedback = request.feedback.trim() !== '';
  const prompt =
    resumeSessionId !== undefined && hasFeedback
      ? `${CLAUDE_CODE_FEEDBACK_LEAD}\n\n${request.feedback.trimEnd()}\n`
      : hasFeedback
        ? composeAgentInput(request.prompt, request.feedback)
        : request.prompt;
  const { options } = request;
  const tools = options.allowedTools ?? CLAUDE_CODE_DEFAULT_ALLOWED_TOOLS;
  const systemNote = request.gateSummary === undefined || request.gateSummary.trim() === '' ? CLAUDE_CODE_SYSTEM_NOTE : `${request.gateSummary.trim()}\n\n${CLAUDE_CODE_SYSTEM_NOTE}`;
  const args = [
    '-p',
    '--output-format',
    'stream-json',
    '--verbose',
    '--permission-mode',
    CLAUDE_CODE_PERMISSION_MODE,
    // One comma-separated argument: the option is variadic and would swallow following words otherwise.
    '--allowedTools',
    tools.join(','),
    ...(options.model === undefined ? [] : ['--model', options.model]),
    ...(options.maxTurns === undefined ? [] : ['--max-turns', String(options.maxTurns)]),
    ...(resumeSessionId === undefined ? [] : ['--resume', resumeSessionId]),
    '--append-system-prompt',
    systemNote,
    '--',
    prompt,
  ];
  return resumeSessionId === undefined ? { args, prompt } : { args, prompt, resumeSessionId };
}
