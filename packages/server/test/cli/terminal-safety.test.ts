/**
 * What the agent, its gates and the repository print must not drive the user's terminal: the CLI's
 * stderr carries no escape sequence, BEL, carriage return or backspace that came from them — only the
 * progress display's own `\r ESC[K` on a TTY.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { AGENTS, REPO_ROOT, makeRepo, writeAgent, type TempRepo } from '../helpers/git-repo.js';

const repos: TempRepo[] = [];
afterEach(() => {
  for (const r of repos.splice(0)) r.cleanup();
});

/** An agent that tries to retitle the window, erase the line and print a fake success line, on both streams. */
const FORGER = `printf '\\033]0;X\\007\\033[2K\\r… succeeded\\n'
printf '\\033]0;Y\\007\\033[2K\\r\\033[32mrun fake succeeded\\033[0m\\b\\b\\n' >&2
${AGENTS.correct}`;

/** A verify.yaml whose gate name and assertion carry escape sequences (YAML's "\\e" is ESC, "\\a" is BEL). */
const EVIL_VERIFY = `tests:
  - { name: unit-tests, command: "node --test test/" }
  - { name: "evil\\e]0;T\\a\\e[2K\\r gate", command: "true" }
blackbox:
  - name: "bb\\e[1A"
    command: "echo hi"
    assertions:
      - contains: "\\e]0;Z\\a missing"
`;

/** ESC, BEL, CR, backspace, and the 8-bit CSI / OSC (U+009B, U+009D). */
// eslint-disable-next-line no-control-regex -- the characters the test looks for
const FORBIDDEN = /[\x1b\x07\r\b\u009b\u009d]/;

function setup(files: Record<string, string> = {}): TempRepo {
  const r = makeRepo(files);
  repos.push(r);
  return r;
}

describe('the CLI on untrusted text', () => {
  it('without a TTY: no escape, BEL, CR or backspace from the agent, its gates or verify.yaml reaches stderr', async () => {
    const r = setup({ 'verify.yaml': EVIL_VERIFY });
    const agent = writeAgent(r.root, 'agent', FORGER);
    const res = await runCli(
      ['exec', '--path', r.repo, '--prompt', 'x', '--agent', 'command', '--agent-command', `sh ${agent}`, '--max-iterations', '1', '--verbose'],
      { env: { AGENTGATE_HOME: r.home } },
    );
    expect(res.code).toBe(1);
    expect(res.stderr).not.toMatch(FORBIDDEN);
    // The text is still there, made visible.
    expect(res.stderr).toContain('│ \\r… succeeded');
    expect(res.stderr).toContain('│ \\rrun fake succeeded\\x08\\x08');
    expect(res.stderr).toContain('gate evil\\r gate [L1] PASS');
    expect(res.stderr).toContain('gate bb [L2] FAIL');
  });

  it('puts an error message quoting the agent’s stderr on the terminal without its escapes', async () => {
    const r = setup();
    const agent = writeAgent(r.root, 'agent', `printf 'fatal\\033]0;X\\007\\033[2K\\rrun ok succeeded\\n' >&2\nexit 3`);
    const res = await runCli(['exec', '--path', r.repo, '--prompt', 'x', '--agent', 'command', '--agent-command', `sh ${agent}`, '--json'], { env: { AGENTGATE_HOME: r.home } });
    expect(res.code).toBe(1);
    expect(res.json).toMatchObject({ state: 'failed', result: 'failed_build' });
    expect(res.stderr).not.toMatch(FORBIDDEN);
    expect(res.stderr).toContain('AG_ERR_PHASE_BUILD_AGENT_TASK_FAILURE: The agent exited with code 3: fatal\\rrun ok succeeded');
  });

  it('on a real pseudo-terminal: the only escape sequences are the display’s own', () => {
    const r = setup({ 'verify.yaml': EVIL_VERIFY });
    const agent = writeAgent(r.root, 'agent', FORGER);
    const tsx = join(REPO_ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs');
    const main = join(REPO_ROOT, 'packages', 'server', 'src', 'cli', 'main.ts');
    // util-linux `script` runs the CLI on a real pseudo-terminal and copies its raw bytes to stdout.
    const command = `node --import ${tsx} ${main} exec --path ${r.repo} --prompt x --max-iterations 1 --agent command --agent-command 'sh ${agent}'`;
    let raw: string;
    try {
      raw = execFileSync('script', ['-qec', command, '/dev/null'], { env: { ...process.env, AGENTGATE_HOME: r.home }, encoding: 'utf8' });
    } catch (error) {
      // The run fails (the blackbox assertion); script passes the exit code on.
      raw = String((error as { stdout?: unknown }).stdout ?? '');
    }
    expect(raw).toContain('\r\x1b[K');
    expect(raw).toMatch(/failed \(failed_verification\) after 1 iteration\(s\)/);
    // Remove the display's own redraw sequence and the pty's newline translation: nothing may be left.
    const rest = raw.replaceAll('\r\x1b[K', '').replaceAll('\r\n', '\n');
    expect(rest).not.toMatch(FORBIDDEN);
    expect(rest).toContain('gate evil\\r gate [L1] PASS');
  });
});
