/**
 * Parsers of git's `-z --no-renames` diff output, as the snapshot runs it (`snapshotter.ts`): the changes
 * with their kind, and the numstat totals.
 */
import type { TreeChange } from './types.js';

/**
 * Parses `git diff --numstat -z` (`<added>\t<deleted>\t<path>\0` per file; `-` for binary files, which
 * count as changed with no line counts).
 */
export function parseNumstat(output: string): { filesChanged: number; insertions: number; deletions: number; paths: string[] } {
  const { filesChanged, insertions, deletions, paths } = parseDiffOutput(output);
  return { filesChanged, insertions, deletions, paths };
}

/**
 * Parses `-z --no-renames` diff output of any mix of `--raw` (`:<modes> <ids> <status>\0<path>\0`),
 * `--name-status` (`<status>\0<path>\0`) and `--numstat` (`<added>\t<deleted>\t<path>\0`) records, in
 * order (a path field is always the one after its status, so a path that looks like a record is never
 * read as one): the changes with their kind, and the numstat totals and paths.
 */
export function parseDiffOutput(output: string): { changes: TreeChange[]; filesChanged: number; insertions: number; deletions: number; paths: string[] } {
  const fields = output.split('\0');
  const changes: TreeChange[] = [];
  const paths: string[] = [];
  let insertions = 0;
  let deletions = 0;
  for (let i = 0; i < fields.length; i += 1) {
    const field = fields[i] ?? '';
    const numstat = /^(\d+|-)\t(\d+|-)\t/.exec(field);
    if (numstat !== null) {
      paths.push(field.slice(numstat[0].length));
      insertions += numstat[1] === '-' || numstat[1] === undefined ? 0 : Number(numstat[1]);
      deletions += numstat[2] === '-' || numstat[2] === undefined ? 0 : Number(numstat[2]);
      continue;
    }
    const status = field.startsWith(':') ? field.slice(field.lastIndexOf(' ') + 1) : /^[A-Z]\d*$/.test(field) ? field : undefined;
    if (status === undefined || i + 1 >= fields.length) continue;
    i += 1;
    changes.push({ path: fields[i] ?? '', change: status.startsWith('A') ? 'added' : status.startsWith('D') ? 'deleted' : 'modified' });
  }
  return { changes, filesChanged: paths.length, insertions, deletions, paths };
}
