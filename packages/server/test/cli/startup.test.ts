/**
 * Issue 12, item 3: `agentgate --version` and `--help` answer before the run path is loaded. Each
 * command's module (and with it zod, yaml, pino, prom-client, fastify, better-sqlite3, the runtime) is
 * imported only when that command runs or its help is asked for. The CLI runs as a child process with a
 * module-resolution hook that records every module it loads; timing is measured in
 * scripts/bench/startup.ts, not here.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command, Help } from 'commander';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildProgram, COMMAND_MODULES, commandNamed, main } from '../../src/cli/main.js';
import type { CliIo } from '../../src/cli/run-command.js';
import { runCli } from '../helpers/cli.js';

/** Packages and source directories only the commands themselves may load. */
const RUN_PATH = ['zod', 'yaml', 'pino', 'prom-client', 'fastify', 'better-sqlite3', 'pg', '@octokit/rest', '@gitbeaker/rest'].map((name) => `/node_modules/${name}/`);
const RUN_PATH_SOURCES = ['/src/runtime.ts', '/src/store/', '/src/schemas/', '/src/execution/', '/src/server/'];

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

let root: string;
beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'agentgate-startup-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

/**
 * Runs the CLI with a resolve hook that appends every module URL it loads to a file, and with an
 * AGENTGATE_HOME below a regular file, where nothing can be created: a command that opened the store
 * would fail.
 */
async function runRecorded(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; loaded: string[] }> {
  const record = path.join(root, 'loaded.txt');
  writeFileSync(record, '');
  writeFileSync(path.join(root, 'hooks.mjs'), ["import { appendFileSync } from 'node:fs';", 'export async function resolve(specifier, context, next) {', '  const resolved = await next(specifier, context);', `  appendFileSync(${JSON.stringify(record)}, resolved.url + '\\n');`, '  return resolved;', '}', ''].join('\n'));
  writeFileSync(path.join(root, 'record.mjs'), `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(path.join(root, 'hooks.mjs')).href)});\n`);
  writeFileSync(path.join(root, 'not-a-directory'), '');
  const result = await runCli(args, {
    env: { NODE_OPTIONS: `--import=${pathToFileURL(path.join(root, 'record.mjs')).href}`, AGENTGATE_HOME: path.join(root, 'not-a-directory', 'home') },
    cwd: root,
  });
  return { code: result.code, stdout: result.stdout, stderr: result.stderr, loaded: readFileSync(record, 'utf8').split('\n').filter((line) => line.length > 0) };
}

function runPathModules(loaded: readonly string[]): string[] {
  return loaded.filter((url) => RUN_PATH.some((dir) => url.includes(dir)) || RUN_PATH_SOURCES.some((dir) => url.includes(`/packages/server${dir}`)));
}

/** An in-process CliIo whose output is collected. */
function memoryIo(): { io: CliIo; out: () => string } {
  let stdout = '';
  const sink = {
    write: (chunk: string): boolean => {
      stdout += chunk;
      return true;
    },
  };
  return { io: { stdout: sink, stderr: sink, env: {}, cwd: root }, out: () => stdout };
}

describe('agentgate start-up', () => {
  describe('--version', () => {
    it('prints the package version without loading the run path or touching AGENTGATE_HOME', async () => {
      const result = await runRecorded(['--version']);
      expect(result.code).toBe(0);
      expect(result.stdout).toBe(`${VERSION}\n`);
      expect(result.loaded.some((url) => url.endsWith('/src/cli/main.ts'))).toBe(true);
      expect(runPathModules(result.loaded)).toEqual([]);
    });
  });

  describe('--help', () => {
    it('lists every command without loading any command module', async () => {
      const result = await runRecorded(['--help']);
      expect(result.code).toBe(0);
      for (const name of ['exec', 'task', 'serve', 'submit', 'status', 'list', 'cancel', 'events', 'cache', 'gates', 'branches']) expect(result.stdout).toMatch(new RegExp(`^  ${name}\\b`, 'm'));
      expect(runPathModules(result.loaded)).toEqual([]);
      expect(result.loaded.filter((url) => /\/src\/cli\/(?!main\.ts)/.test(url))).toEqual([]);
    });

    it('shows the options of exec, which main.ts defines, without loading the run path', async () => {
      const result = await runRecorded(['exec', '--help']);
      expect(result.code).toBe(0);
      expect(result.stdout).toContain('--agent-command <shell>');
      expect(result.stdout).toContain('--sandbox <mode>');
      expect(runPathModules(result.loaded)).toEqual([]);
    });

    it('loads a command’s own module for its help (the recorder sees fastify for serve)', async () => {
      const result = await runRecorded(['serve', '--help']);
      expect(result.code).toBe(0);
      expect(result.stdout).toContain('--max-concurrent <n>');
      expect(result.loaded.some((url) => url.includes('/node_modules/fastify/'))).toBe(true);
    });
  });

  describe('the placeholders of commands whose module is not loaded', () => {
    it('name, describe and order the commands exactly as their modules define them', async () => {
      for (const module of COMMAND_MODULES) {
        const program = new Command('agentgate');
        const { io } = memoryIo();
        (await module.load())(program, io, () => undefined);
        expect(program.commands.map((command) => ({ term: new Help().subcommandTerm(command), description: command.description() }))).toEqual(module.commands);
      }
    });

    it('make the top-level help the same text as with every command module loaded', async () => {
      const registered = new Map(await Promise.all(COMMAND_MODULES.map(async (module, index) => [index, await module.load()] as const)));
      const { io, out } = memoryIo();
      expect(await main(['--help'], io)).toBe(0);
      expect(out()).toBe(buildProgram(memoryIo().io, () => undefined, registered).helpInformation());
    });

    it('are replaced by the real command for `help <command>`', async () => {
      const { io, out } = memoryIo();
      expect(await main(['help', 'gates'], io)).toBe(0);
      expect(out()).toContain('--run');
      expect(out()).toContain('Usage: agentgate gates [options]');
    });
  });

  describe('commandNamed', () => {
    it('finds the command among the arguments, or the one help is asked about', () => {
      expect(commandNamed(['exec', '--path', 'x'])).toBe('exec');
      expect(commandNamed(['--help'])).toBeUndefined();
      expect(commandNamed(['help', 'serve'])).toBe('serve');
      expect(commandNamed(['--json', 'status', 'id'])).toBe('status');
    });
  });
});
