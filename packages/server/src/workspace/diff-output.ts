/**
 * Parsers of git's `-z --no-renames` status and diff output, as the snapshot runs it (`snapshotter.ts`):
 * the changes with their kind and entries, and the numstat totals; and the changes since the base commit,
 * composed from the previous snapshot's and the iteration's own where possible.
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
export function parseDiffOutput(output: string): { changes: TreeChange[]; raw: RawChange[]; filesChanged: number; insertions: number; deletions: number; paths: string[] } {
  const fields = output.split('\0');
  const changes: TreeChange[] = [];
  const raw: RawChange[] = [];
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
    const path = fields[i] ?? '';
    changes.push({ path, change: status.startsWith('A') ? 'added' : status.startsWith('D') ? 'deleted' : 'modified' });
    const [oldMode, newMode, oldId, newId] = field.startsWith(':') ? field.slice(1).split(' ') : [];
    if (oldMode !== undefined && newMode !== undefined && oldId !== undefined && newId !== undefined) raw.push({ path, old: { mode: oldMode, id: oldId }, new: { mode: newMode, id: newId } });
  }
  return { changes, raw, filesChanged: paths.length, insertions, deletions, paths };
}

/** One side of a `--raw` record: the entry's mode and object id (`000000` and zeros where there is none). */
export interface RawSide {
  mode: string;
  id: string;
}

/** A `--raw --no-abbrev` record: a path and its entry before and after. */
export interface RawChange {
  path: string;
  old: RawSide;
  new: RawSide;
}

/**
 * The changes from a base to a commit C, from the changes from that base to its predecessor B
 * (`fromBase`, keyed by path) and the `--raw --no-abbrev` records from B to C (`step`): a path keeps its
 * base entry from `fromBase` (else the step's old entry, unchanged since the base) and takes its entry in C
 * from the step, and counts when the two differ — what `git diff --raw <base> C` lists, by path. Undefined
 * when the step does not start where `fromBase` ends (the two were not measured along one line).
 */
export function composeFromBase(fromBase: ReadonlyMap<string, RawChange>, step: readonly RawChange[]): Map<string, RawChange> | undefined {
  const next = new Map(fromBase);
  for (const change of step) {
    const before = fromBase.get(change.path);
    if (before !== undefined && (before.new.mode !== change.old.mode || before.new.id !== change.old.id)) return undefined;
    const base = before?.old ?? change.old;
    if (base.mode === change.new.mode && base.id === change.new.id) next.delete(change.path);
    else next.set(change.path, { path: change.path, old: base, new: change.new });
  }
  return next;
}

/**
 * `fromBase` as git lists the changes of a tree-to-tree diff: by path in byte order (which is git's tree
 * order for full paths), each with its kind.
 */
export function changesOf(fromBase: ReadonlyMap<string, RawChange>): TreeChange[] {
  const absent = (side: RawSide): boolean => /^0+$/.test(side.mode);
  return [...fromBase.values()]
    .map((change) => ({ change, bytes: Buffer.from(change.path, 'utf8') }))
    .sort((a, b) => Buffer.compare(a.bytes, b.bytes))
    .map(({ change }): TreeChange => ({ path: change.path, change: absent(change.old) ? 'added' : absent(change.new) ? 'deleted' : 'modified' }));
}

/**
 * Every change between the base and the new snapshot, with the entries behind them: none for the base's
 * own tree; the iteration's diff when it was measured from the base (`fromBaseDiff`); the iteration's
 * entries added to `previous` (the changes since the base of what it was measured against); else — nothing
 * remembered, the two do not line up, or a name that is not UTF-8 (see {@link byName}) — git's diff against
 * the base (`sinceBaseOut`, or `sinceBase` run now). `fromBase` is undefined when it cannot be remembered.
 */
export async function changesSinceBase(
  baseTree: boolean,
  fromBaseDiff: { changes: TreeChange[]; raw: RawChange[] } | undefined,
  previous: ReadonlyMap<string, RawChange> | undefined,
  step: readonly RawChange[],
  sinceBaseOut: string | undefined,
  sinceBase: () => Promise<string>,
): Promise<{ fromBase: ReadonlyMap<string, RawChange> | undefined; changes: TreeChange[] }> {
  if (baseTree) return { fromBase: new Map(), changes: [] };
  if (fromBaseDiff !== undefined) return { fromBase: byName(fromBaseDiff.raw), changes: fromBaseDiff.changes };
  const composed = previous === undefined || byName(step) === undefined ? undefined : composeFromBase(previous, step);
  if (composed !== undefined) return { fromBase: composed, changes: changesOf(composed) };
  const parsed = parseDiffOutput(sinceBaseOut ?? (await sinceBase()));
  return { fromBase: byName(parsed.raw), changes: parsed.changes };
}

/**
 * `raw` keyed by path, or undefined when a path cannot stand for one entry: git's output is read as UTF-8,
 * so every name that is not valid UTF-8 comes out with U+FFFD in place of its bytes, and two such names
 * can read the same. Entries with such a name are never remembered or composed: git's diff answers.
 */
function byName(raw: readonly RawChange[]): Map<string, RawChange> | undefined {
  const entries = new Map(raw.map((change) => [change.path, change]));
  return entries.size !== raw.length || raw.some((change) => change.path.includes('\uFFFD')) ? undefined : entries;
}

/**
 * Parses `git status --porcelain -z --no-renames` (`XY <path>\0` per entry; `??` for an untracked one):
 * how many entries, and the untracked paths (a nested repository as `dir/`).
 */
export function parseStatus(output: string): { entries: number; untracked: string[] } {
  const fields = output.split('\0').filter((field) => field.length > 0);
  return { entries: fields.length, untracked: fields.filter((field) => field.startsWith('?? ')).map((field) => field.slice(3)) };
}
