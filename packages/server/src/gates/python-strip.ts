/**
 * Taking the worktree's projects back out of a run's virtualenv (docs/gates.md "Python environments"):
 * whatever a setup installed from the worktree — `pip install -e .`, `uv sync`, `poetry install`, a
 * legacy `.egg-link`, a `.pth` path line — is removed after the setup ran, so the virtualenv can be cached
 * and the worktree is linked per run instead (python-project.ts `linkProjects`). python-venv.ts makes
 * the virtualenv; python-env.ts runs the setup and calls {@link stripWorktreeInstalls}.
 */
import { existsSync, readFileSync } from 'node:fs';
import { readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sitePackagesDirs } from './python-venv.js';

function isInsideOrSame(candidate: string, root: string): boolean {
  const relative = path.relative(root, candidate);
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
}

/** The first field of each RECORD row (CSV; a path with a comma is quoted). */
function recordPaths(record: string): string[] {
  return record
    .split('\n')
    .map((row) => row.replace(/\r$/, ''))
    .filter((row) => row !== '')
    .map((row) => (row.startsWith('"') ? row.slice(1, row.indexOf('"', 1)).replace(/""/g, '"') : row.slice(0, row.indexOf(',') === -1 ? undefined : row.indexOf(','))));
}

/** Removes the files a distribution installed into site-packages (its package, its editable hooks), keeping its metadata and scripts. */
async function removeInstalledFiles(sitePackages: string, distInfo: string): Promise<void> {
  let record: string;
  try {
    record = await readFile(path.join(sitePackages, distInfo, 'RECORD'), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  const dirs = new Set<string>();
  for (const entry of recordPaths(record)) {
    const file = path.resolve(sitePackages, entry);
    if (!isInsideOrSame(file, sitePackages) || file === sitePackages || isInsideOrSame(file, path.join(sitePackages, distInfo))) continue;
    await rm(file, { force: true });
    for (let dir = path.dirname(file); dir !== sitePackages && isInsideOrSame(dir, sitePackages); dir = path.dirname(dir)) dirs.add(dir);
  }
  // Deepest first; a directory still holding something (another package's files) stays.
  for (const dir of [...dirs].sort((a, b) => b.length - a.length)) {
    try {
      await rmdir(dir);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOENT') throw error;
    }
  }
}

/**
 * Takes out of the virtualenv every installation of a directory inside the worktree — `pip install -e .`,
 * `pip install .`, `uv sync` and `poetry install` of the project, a legacy `.egg-link` or a path line
 * of a `.pth` file — and returns those directories (worktree-relative; `.` for the root). They are then
 * linked per run ({@link linkProjects}): a copy would go stale as the agent edits the worktree, and an
 * entry made in one run's worktree must not point into it from the next. The metadata (`*.dist-info`:
 * version, entry points) and console scripts are kept; they import by module name.
 */
export async function stripWorktreeInstalls(venv: string, worktreePath: string): Promise<string[]> {
  const worktree = path.resolve(worktreePath);
  const linked = new Set<string>();
  const relativeDir = (dir: string): string => path.relative(worktree, dir) || '.';
  for (const sitePackages of await sitePackagesDirs(venv)) {
    const names = await readdir(sitePackages);
    for (const name of names) {
      const file = path.join(sitePackages, name);
      if (name.endsWith('.dist-info')) {
        const dir = directInstallDir(path.join(file, 'direct_url.json'));
        if (dir !== undefined && isInsideOrSame(dir, worktree)) {
          linked.add(relativeDir(dir));
          await removeInstalledFiles(sitePackages, name);
        }
      } else if (name.endsWith('.egg-link')) {
        const target = (await readFile(file, 'utf8')).split('\n')[0]?.trim() ?? '';
        if (path.isAbsolute(target) && isInsideOrSame(path.resolve(target), worktree)) {
          linked.add(relativeDir(path.resolve(target)));
          await rm(file, { force: true });
        }
      }
    }
    for (const name of names.filter((n) => n.endsWith('.pth'))) {
      const file = path.join(sitePackages, name);
      if (!existsSync(file)) continue;
      const lines = (await readFile(file, 'utf8')).split('\n');
      const kept = lines.filter((line) => {
        const entry = line.trim();
        if (entry === '' || entry.startsWith('#') || entry.startsWith('import ') || entry.startsWith('import\t') || !path.isAbsolute(entry)) return true;
        return !isInsideOrSame(path.resolve(entry), worktree);
      });
      if (kept.length === lines.length) continue;
      await rm(file, { force: true });
      if (kept.some((line) => line.trim() !== '')) await writeFile(file, kept.join('\n'));
    }
  }
  return [...linked].sort();
}

/** The directory of a `file:` directory install (`dir_info`), from a `direct_url.json` (PEP 610). */
function directInstallDir(file: string): string | undefined {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    // No direct_url.json (installed from an index) or not JSON: not a local directory install.
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { url, dir_info: dirInfo } = value as Record<string, unknown>;
  if (typeof url !== 'string' || !url.startsWith('file:') || typeof dirInfo !== 'object' || dirInfo === null) return undefined;
  try {
    return path.resolve(fileURLToPath(url));
  } catch {
    // A file: URL naming another host: not ours.
    return undefined;
  }
}
