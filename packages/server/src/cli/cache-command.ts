/**
 * `agentgate cache ls|prune`: the environment cache of setups (gates/env-cache.ts, docs/gates.md) — both
 * kinds of entries, `node` (node_modules) and `python` (virtualenvs, gates/python-env.ts). Both read
 * `$AGENTGATE_HOME/env-cache` (or `--home`); neither needs the server.
 */
import { homedir } from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { AgentGateError } from '../errors.js';
import { DEFAULT_ENV_CACHE_MAX_BYTES, EnvCache } from '../gates/env-cache.js';
import { systemClock } from '../util/clock.js';
import { sanitizeForTerminal } from '../util/terminal.js';
import type { CliIo } from './run-command.js';
import { EXIT } from './run-command.js';

const UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** `500M`, `8G`, `1024` → bytes. */
export function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(text.trim());
  const unit = UNITS[(match?.[2] ?? '').toLowerCase()];
  if (match?.[1] === undefined || unit === undefined) throw new AgentGateError('AG_ERR_CLI_USAGE', `--max-size: expected a size such as 500M or 8G, got "${text}"`);
  return Math.floor(Number(match[1]) * unit);
}

function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let index = 0;
  while (value >= 1024 && index < units.length - 1) {
    value /= 1024;
    index += 1;
  }
  return `${value.toFixed(1)} ${units[index] ?? 'TiB'}`;
}

function cacheRoot(home: string | undefined, io: CliIo): string {
  const raw = home ?? io.env.AGENTGATE_HOME ?? '~/.agentgate';
  const user = io.env.HOME !== undefined && io.env.HOME.trim() !== '' ? io.env.HOME : homedir();
  const expanded = raw === '~' ? user : raw.startsWith('~/') ? path.join(user, raw.slice(2)) : raw;
  return path.resolve(io.cwd, expanded, 'env-cache');
}

export function registerCacheCommand(program: Command, io: CliIo, setExit: (code: number) => void): void {
  const cache = program.command('cache').description('the environment cache of setup steps (installed dependencies: node_modules, Python virtualenvs)');
  cache
    .command('ls')
    .description('list cached environments, most recently used first')
    .option('--home <dir>', 'AgentGate home (default: $AGENTGATE_HOME, else ~/.agentgate)')
    .option('--json', 'print the entries as JSON')
    .action(async (flags: { home?: string; json?: boolean }) => {
      const entries = await new EnvCache({ root: cacheRoot(flags.home, io), clock: systemClock }).list();
      if (flags.json === true) {
        io.stdout.write(`${JSON.stringify(entries)}\n`);
      } else {
        for (const e of entries) {
          const what = e.python === undefined ? [...e.dirs, ...(e.homeDirs ?? []).map((dir) => `~/${dir}`)].join(',') : `Python ${e.python.version}`;
          io.stdout.write(sanitizeForTerminal(`${e.key}  ${e.kind.padEnd(6)}  ${formatSize(e.sizeBytes).padStart(10)}  used ${e.lastUsedAt}  ${what}  ${e.commands.join(' && ')}`) + '\n');
        }
        const total = entries.reduce((sum, e) => sum + e.sizeBytes, 0);
        io.stdout.write(`${entries.length} entries, ${formatSize(total)}\n`);
      }
      setExit(EXIT.succeeded);
    });
  cache
    .command('prune')
    .description('evict least recently used environments until the cache fits --max-size (--all: everything)')
    .option('--home <dir>', 'AgentGate home (default: $AGENTGATE_HOME, else ~/.agentgate)')
    .option('--max-size <size>', `bound, e.g. 2G (default ${formatSize(DEFAULT_ENV_CACHE_MAX_BYTES)})`)
    .option('--all', 'remove every entry')
    .action(async (flags: { home?: string; maxSize?: string; all?: boolean }) => {
      const maxBytes = flags.all === true ? 0 : flags.maxSize === undefined ? DEFAULT_ENV_CACHE_MAX_BYTES : parseSize(flags.maxSize);
      const evicted = await new EnvCache({ root: cacheRoot(flags.home, io), clock: systemClock }).prune({ maxBytes });
      for (const key of evicted) io.stdout.write(`evicted ${key}\n`);
      io.stdout.write(`${evicted.length} entries evicted\n`);
      setExit(EXIT.succeeded);
    });
}
