/**
 * Reading the Python install commands of a setup (`pip install …`, `python -m pip install …`,
 * `uv pip install …`, `uv sync`, `poetry install`, `pipenv install`): which lines are installs, what
 * they install, and writing a pip line back after the project itself was taken out of it.
 *
 * Pure: no file system, no processes. python-plan.ts decides what to do with the parsed lines (run them in
 * AgentGate's virtualenv, link the project from the worktree instead of installing it, cache the rest).
 *
 * Only plain lines are parsed: words, quotes and backslashes. A line with anything a shell would
 * interpret (`&&`, `;`, pipes, redirections, `$`, backquotes, globs) is not read at all — it still runs,
 * in the virtualenv, but AgentGate neither rewrites nor caches what it does.
 */

export type PythonInstallTool = 'pip' | 'uv-pip' | 'uv-sync' | 'poetry' | 'pipenv';

/** One install line, split into shell words. */
export interface PythonInstallLine {
  tool: PythonInstallTool;
  /** The words naming the command, e.g. `['python', '-m', 'pip', 'install']`. */
  head: string[];
  /** The arguments after them. */
  args: string[];
}

/** A pip argument that names what to install. */
export type PipTarget =
  | { kind: 'requirement'; text: string }
  /** A local directory or archive (`.`, `./plugins/x`, `.[test]`, `dist/x.whl`), with its extras. */
  | { kind: 'path'; text: string; path: string; extras: string[]; editable: boolean };

/** What a `pip install` / `uv pip install` line asks for. */
export interface PipArguments {
  targets: PipTarget[];
  /** `-r` files, as written (relative to the working directory). */
  requirementFiles: string[];
  /** `-c` files, as written. */
  constraintFiles: string[];
  /** Options that install somewhere else than the virtualenv (`--user`, `--target`, `--prefix`, `--root`). */
  elsewhere: string[];
  /** The other options, with their values, in order. */
  options: string[];
}

/** pip and uv options that take a value (`--opt value` or `--opt=value`). */
const VALUE_OPTIONS = new Set([
  '-r', '--requirement', '-c', '--constraint', '-e', '--editable', '-i', '--index-url', '--extra-index-url', '--index', '--default-index',
  '-f', '--find-links', '-t', '--target', '--prefix', '--root', '--platform', '--python-platform', '--python-version', '--implementation',
  '--abi', '--src', '--upgrade-strategy', '--no-binary', '--only-binary', '--progress-bar', '-C', '--config-settings', '--config-setting',
  '--global-option', '--build-option', '--log', '--cache-dir', '--timeout', '--retries', '--proxy', '--trusted-host', '--exists-action',
  '--cert', '--client-cert', '--report', '--python', '-p', '--extra', '--group', '--index-strategy', '--keyring-provider', '--resolution',
  '--prerelease', '--link-mode', '--override', '--exclude-newer', '--refresh-package', '--reinstall-package', '--upgrade-package', '-P',
]);

/** Options (without a value) that install outside the virtualenv. */
const ELSEWHERE_FLAGS = new Set(['--user', '--system', '--break-system-packages']);
const ELSEWHERE_VALUES = new Set(['-t', '--target', '--prefix', '--root']);

/** Characters a shell would interpret outside quotes: such a line is not read. */
const SHELL_SPECIAL = /[;&|<>()`$*?{}\r]/;

/**
 * Splits a line into words the way `sh` would for plain lines (single and double quotes, backslashes);
 * undefined when the line uses anything else a shell interprets. A `#` starting a word ends the line.
 */
export function shellWords(line: string): string[] | undefined {
  const words: string[] = [];
  let current = '';
  let inWord = false;
  for (let i = 0; i < line.length; i += 1) {
    const c = line.charAt(i);
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end === -1) return undefined;
      current += line.slice(i + 1, end);
      i = end;
      inWord = true;
    } else if (c === '"') {
      let j = i + 1;
      for (; j < line.length && line.charAt(j) !== '"'; j += 1) {
        const d = line.charAt(j);
        if (d === '$' || d === '`') return undefined;
        if (d === '\\' && (line.charAt(j + 1) === '"' || line.charAt(j + 1) === '\\')) {
          current += line.charAt(j + 1);
          j += 1;
        } else {
          current += d;
        }
      }
      if (j >= line.length) return undefined;
      i = j;
      inWord = true;
    } else if (c === '\\') {
      if (i + 1 >= line.length) return undefined;
      current += line.charAt(i + 1);
      i += 1;
      inWord = true;
    } else if (c === ' ' || c === '\t') {
      if (inWord) words.push(current);
      current = '';
      inWord = false;
    } else if (c === '#' && !inWord) {
      break;
    } else if (SHELL_SPECIAL.test(c) || (c === '~' && !inWord)) {
      return undefined;
    } else {
      current += c;
      inWord = true;
    }
  }
  if (inWord) words.push(current);
  return words;
}

/** A word as `sh` reads it back: bare when it is plain, else in single quotes. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The command lines of a step: non-empty, not comments. */
export function commandLines(command: string): string[] {
  return command
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
}

const PIP = /^pip(3(\.\d+)?)?$/;
const PYTHON = /^python(3(\.\d+)?)?$/;

/** The install a line of words is, or undefined. */
export function classifyInstall(words: readonly string[]): PythonInstallLine | undefined {
  const [a, b, c, d] = words;
  const split = (n: number, tool: PythonInstallTool): PythonInstallLine => ({ tool, head: words.slice(0, n), args: words.slice(n) });
  if (a !== undefined && PIP.test(a) && b === 'install') return split(2, 'pip');
  if (a !== undefined && PYTHON.test(a) && b === '-m' && c === 'pip' && d === 'install') return split(4, 'pip');
  if (a === 'uv' && b === 'pip' && c === 'install') return split(3, 'uv-pip');
  if (a === 'uv' && b === 'sync') return split(2, 'uv-sync');
  if (a === 'poetry' && b === 'install') return split(2, 'poetry');
  if (a === 'pipenv' && (b === 'install' || b === 'sync')) return split(2, 'pipenv');
  return undefined;
}

/**
 * Whether a command mentions a Python install anywhere, even in a line {@link shellWords} cannot read
 * (`pip install -e . && pytest`): such a setup must run in AgentGate's virtualenv too.
 */
export function mentionsPythonInstall(command: string): boolean {
  return /(^|[\s;&|(])(pip3?(\.\d+)?\s+install|python(3(\.\d+)?)?\s+-m\s+pip\s+install|uv\s+(pip\s+install|sync)|poetry\s+install|pipenv\s+(install|sync))(\s|$)/m.test(command);
}

/** Whether a command runs Python tooling (a gate that needs the project importable). */
export function mentionsPythonTool(command: string): boolean {
  return /(^|[\s;&|(/])(pytest|py\.test|python(3(\.\d+)?)?|tox|nox|pip3?|uv|poetry|hatch|pdm)(\s|$)/m.test(command);
}

/** Archive names pip installs from a path. */
const ARCHIVE = /\.(whl|tar\.gz|tgz|zip|tar\.bz2)$/;

/** `.`, `./x`, `../x`, `/abs`, `dir/sub`, `x.whl` — with an optional `[extras]` suffix. */
function pathTarget(text: string, editable: boolean): PipTarget {
  const match = /^(.*?)(?:\[([^\]]*)\])?$/.exec(text);
  const base = match?.[1] ?? text;
  const extras = (match?.[2] ?? '')
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '');
  const local = base === '.' || base === '..' || base.startsWith('./') || base.startsWith('../') || base.startsWith('/') || ARCHIVE.test(base) || (base.includes('/') && !base.includes('://') && !base.includes('@'));
  if (!local || base.startsWith('file:')) return { kind: 'requirement', text };
  return { kind: 'path', text, path: base, extras, editable };
}

/**
 * Reads the arguments of a pip (or `uv pip`) install. Undefined when an option's value is missing:
 * such a line is left as it is.
 */
export function parsePipArguments(args: readonly string[]): PipArguments | undefined {
  const out: PipArguments = { targets: [], requirementFiles: [], constraintFiles: [], elsewhere: [], options: [] };
  for (let i = 0; i < args.length; i += 1) {
    const word = args[i] ?? '';
    if (word === '--') {
      for (const rest of args.slice(i + 1)) out.targets.push(pathTarget(rest, false));
      break;
    }
    let name: string | undefined;
    let value: string | undefined;
    if (word.startsWith('--')) {
      const eq = word.indexOf('=');
      name = eq === -1 ? word : word.slice(0, eq);
      if (eq !== -1) value = word.slice(eq + 1);
    } else if (word.startsWith('-') && word.length > 1) {
      name = word.slice(0, 2);
      if (word.length > 2 && VALUE_OPTIONS.has(name)) value = word.slice(2);
    }
    if (name === undefined) {
      out.targets.push(pathTarget(word, false));
      continue;
    }
    if (!VALUE_OPTIONS.has(name)) {
      if (ELSEWHERE_FLAGS.has(name)) out.elsewhere.push(name);
      out.options.push(word);
      continue;
    }
    if (value === undefined) {
      i += 1;
      value = args[i];
      if (value === undefined) return undefined;
    }
    switch (name) {
      case '-r':
      case '--requirement':
        out.requirementFiles.push(value);
        break;
      case '-c':
      case '--constraint':
        out.constraintFiles.push(value);
        break;
      case '-e':
      case '--editable':
        out.targets.push(pathTarget(value, true));
        break;
      default:
        if (ELSEWHERE_VALUES.has(name)) out.elsewhere.push(name);
        out.options.push(name, value);
    }
  }
  return out;
}

/** A pip line written back: its head, options, `-r`/`-c` files and targets; undefined when nothing is left to install. */
export function formatPipLine(head: readonly string[], parsed: PipArguments, targets: readonly string[]): string | undefined {
  if (targets.length === 0 && parsed.requirementFiles.length === 0) return undefined;
  const words = [
    ...head,
    ...parsed.options,
    ...parsed.requirementFiles.flatMap((file) => ['-r', file]),
    ...parsed.constraintFiles.flatMap((file) => ['-c', file]),
    ...targets,
  ];
  return words.map(shellQuote).join(' ');
}

/** PEP 503 normalised distribution name (`Foo_Bar.baz` → `foo-bar-baz`). */
export function canonicalName(name: string): string {
  return name.toLowerCase().replace(/[-_.]+/g, '-');
}

/** The name and extras a requirement string starts with (`calc[test] >= 1; python_version<"3.12"`). */
export function requirementName(requirement: string): { name: string; extras: string[] } | undefined {
  const match = /^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?/.exec(requirement);
  if (match?.[1] === undefined) return undefined;
  const extras = (match[2] ?? '')
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '');
  return { name: match[1], extras };
}
