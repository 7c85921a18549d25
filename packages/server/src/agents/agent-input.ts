/** How the task and the feedback of the previous iteration are put together for an agent. */

/** Heading that separates the prompt from the feedback (only present when there is feedback). */
export const FEEDBACK_HEADING = '## Feedback from the previous iteration';

/**
 * The prompt, then — only when there is feedback — a blank line, the {@link FEEDBACK_HEADING} and the
 * feedback. Always ends with a newline so `read`-style agents see a complete last line. The command
 * driver writes it to stdin; CLI agents get it when a new session must hear both.
 */
export function composeAgentInput(prompt: string, feedback: string): string {
  const withNewline = (text: string): string => (text.endsWith('\n') ? text : `${text}\n`);
  const head = withNewline(prompt);
  return feedback.trim() === '' ? head : `${head}\n${FEEDBACK_HEADING}\n\n${withNewline(feedback)}`;
}
