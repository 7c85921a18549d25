/**
 * The `claude-code` agent driver (SPEC 7): runs the real `claude` CLI in print mode in the run's
 * workspace and turns its `--output-format stream-json` output into AgentGate events and an
 * {@link AgentSummary}.
 *
 * Invocation (verified against claude 2.1.330, see docs/agents.md):
 *   claude -p --output-format stream-json --verbose --permission-mode acceptEdits
 *     --allowedTools <list> [--model m] [--max-turns n] [--resume <sessionId>]
 *     --append-system-prompt <gate summary + AgentGate note> -- <prompt>
 * - stdin is empty and closed at once (an open stdin makes claude wait 3 s for piped input);
 * - `acceptEdits` plus an explicit tool list is the permission setup that works when AgentGate runs as
 *   root (`--dangerously-skip-permissions` / `bypassPermissions` are refused as root) and still never
 *   blocks on a prompt: anything not allowed is denied, reported to the model and to us;
 * - `--` ends option parsing so a prompt starting with `-` stays a prompt;
 * - iteration 2+ resumes the previous iteration's session and sends only the feedback; without a session
 *   (or when the session cannot be found) the prompt and the feedback go to a new session.
 *
 * Layout: `options.ts` (names, defaults, option checks), `args.ts` (the command line), `stream.ts` (the
 * stream-json parser), `accumulator.ts` (events and summary of one invocation), `classification.ts`
 * (what the end means), `protocol.ts` (the driver: the protocol plugged into ProcessAgentDriver). The
 * parser, the accumulator and the classification are pure and tested on captured output.
 */
export { ClaudeStreamAccumulator, MAX_TOOL_INPUT_STRING_CHARS, MAX_TOOL_OUTPUT_CHARS } from './accumulator.js';
export { buildClaudeCodeInvocation, CLAUDE_CODE_FEEDBACK_LEAD, CLAUDE_CODE_SYSTEM_NOTE, type ClaudeCodeInvocation } from './args.js';
export { CLAUDE_CODE_INSTALL_HINT, claudeSessionNotFound, classifyClaudeRun, type ClaudeRunClassification, type ClaudeRunOutcome } from './classification.js';
export {
  CLAUDE_CODE_AGENT_NAME,
  CLAUDE_CODE_BIN_ENV,
  CLAUDE_CODE_DEFAULT_ALLOWED_TOOLS,
  CLAUDE_CODE_FIXED_ENV,
  CLAUDE_CODE_PERMISSION_MODE,
  validateClaudeCodeOptions,
  type ClaudeCodeDriverConfig,
} from './options.js';
export { ClaudeCodeDriver, claudeCodeProtocol, createClaudeCodeDriver } from './protocol.js';
export {
  parseClaudeStreamLine,
  type ClaudeContentBlock,
  type ClaudeResult,
  type ClaudeStreamMessage,
  type ClaudeToolResult,
  type ClaudeUsage,
} from './stream.js';
export type { AgentStreamEvent } from '../process-driver/protocol.js';
