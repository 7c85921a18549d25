/** The repository of the submodule tamper tests: a base commit with a test, then a submodule below test/. */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { git } from '../workspace/helpers.js';

/** Where the submodule lives: below the protected `test/`. */
export const SUITE = 'test/suite';

/** A `.gitmodules` naming the submodule at {@link SUITE}, with `ignore = <ignore>` when given. */
export function gitmodules(ignore?: string): string {
  return `[submodule "suite"]\n\tpath = ${SUITE}\n\turl = ./suite\n${ignore === undefined ? '' : `\tignore = ${ignore}\n`}`;
}

/** Creates `repo` with a base commit holding `test/math.test.js` and `app.js`. */
export async function makeBaseRepo(repo: string): Promise<void> {
  await mkdir(path.join(repo, 'test'), { recursive: true });
  git(repo, 'init', '--quiet', '--initial-branch=main');
  await writeFile(path.join(repo, 'test', 'math.test.js'), 'assert(add(1, 2) === 3);\n');
  await writeFile(path.join(repo, 'app.js'), 'export {};\n');
  git(repo, 'add', '--all');
  git(repo, 'commit', '--quiet', '-m', 'base');
}

/** Adds a submodule at {@link SUITE} (a gitlink to the repository's own HEAD) and its `.gitmodules`; commits. Returns the gitlink. */
export async function addSubmodule(repo: string): Promise<string> {
  const commit = git(repo, 'rev-parse', 'HEAD');
  await writeFile(path.join(repo, '.gitmodules'), gitmodules());
  await mkdir(path.join(repo, SUITE), { recursive: true });
  git(repo, 'add', '.gitmodules');
  git(repo, 'update-index', '--add', '--cacheinfo', `160000,${commit},${SUITE}`);
  git(repo, 'commit', '--quiet', '-m', 'add a submodule below the protected test/');
  return commit;
}
