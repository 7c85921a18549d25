/**
 * Reads the index AgentGate's own `read-tree` has just written for a run (format: git's
 * `Documentation/gitformat-index.txt`), so checking a workspace out costs no `ls-files` process and the
 * first snapshot no `rev-parse`: the entries as `git ls-files -z --stage` prints them, and the base
 * commit's root tree from the cache tree (`TREE` extension) that `read-tree` of a single tree fills in.
 *
 * Only the plain layouts are read — versions 2 and 3, every entry at stage 0, no split index (`link`)
 * and no sparse index (`sdir`). For anything else the reader answers undefined and the caller runs git
 * instead; it never guesses. The file is AgentGate's and written before any agent runs, so it is not
 * treated as hostile, but every length is still checked against the buffer.
 */

/** What {@link readIndexListing} found. */
export interface IndexListing {
  /** The entries in `git ls-files -z --stage` format: `<mode> <object> <stage>\t<path>\0` each. */
  lsFilesStage: string;
  /**
   * The root tree the index was read from (the cache tree's root entry), or undefined when the index
   * holds no valid one.
   */
  rootTree: string | undefined;
}

const SIGNATURE = 0x44495243; // "DIRC"
const NAME_LENGTH_MASK = 0x0fff;
const EXTENDED_FLAG = 0x4000;
const STAGE_MASK = 0x3000;
/** ctime, mtime (seconds and nanoseconds each), dev, ino, mode, uid, gid, size: 4 bytes each. */
const STAT_BYTES = 40;
const MODE_OFFSET = 24;

/**
 * Parses `index` (the whole file) of a repository whose object ids are `idBytes` long (20 for SHA-1, 32
 * for SHA-256). Undefined for a layout this reader does not handle (see the module comment) or a file
 * that does not parse.
 */
export function readIndexListing(index: Buffer, idBytes: 20 | 32): IndexListing | undefined {
  if (index.length < 12 + idBytes || index.readUInt32BE(0) !== SIGNATURE) return undefined;
  const version = index.readUInt32BE(4);
  if (version !== 2 && version !== 3) return undefined;
  const count = index.readUInt32BE(8);
  const end = index.length - idBytes; // the trailing checksum
  const lines: string[] = [];
  let at = 12;
  for (let i = 0; i < count; i += 1) {
    const idAt = at + STAT_BYTES;
    const flagsAt = idAt + idBytes;
    if (flagsAt + 2 > end) return undefined;
    const flags = index.readUInt16BE(flagsAt);
    if ((flags & STAGE_MASK) !== 0) return undefined;
    const extended = (flags & EXTENDED_FLAG) !== 0;
    if (extended && version < 3) return undefined;
    const nameAt = flagsAt + 2 + (extended ? 2 : 0);
    const nul = index.indexOf(0, nameAt);
    if (nul === -1 || nul >= end) return undefined;
    const nameLength = nul - nameAt;
    // The 12-bit field saturates for long names; below that it must agree with the NUL.
    if ((flags & NAME_LENGTH_MASK) !== Math.min(nameLength, NAME_LENGTH_MASK)) return undefined;
    const mode = index.readUInt32BE(at + MODE_OFFSET);
    lines.push(`${mode.toString(8).padStart(6, '0')} ${index.toString('hex', idAt, flagsAt)} 0\t${index.toString('utf8', nameAt, nul)}\0`);
    // Versions 2 and 3 pad each entry with 1 to 8 NULs to a multiple of eight bytes.
    at += (nameAt - at + nameLength + 8) & ~7;
  }
  if (at > end) return undefined;
  let rootTree: string | undefined;
  while (at < end) {
    if (at + 8 > end) return undefined;
    const signature = index.toString('latin1', at, at + 4);
    const size = index.readUInt32BE(at + 4);
    const dataAt = at + 8;
    if (dataAt + size > end) return undefined;
    if (signature === 'link' || signature === 'sdir') return undefined;
    if (signature === 'TREE') rootTree = readRootTree(index.subarray(dataAt, dataAt + size), idBytes, count);
    at = dataAt + size;
  }
  return { lsFilesStage: lines.join(''), rootTree };
}

/**
 * The root entry of a `TREE` extension: an empty path, `<entry count> <subtree count>\n`, then the tree's
 * id when the count is not -1 (invalidated). Trusted only when it covers every entry of the index.
 */
function readRootTree(data: Buffer, idBytes: number, entries: number): string | undefined {
  if (data.length === 0 || data[0] !== 0) return undefined;
  const newline = data.indexOf(0x0a, 1);
  if (newline === -1) return undefined;
  const match = /^(-?\d+) (\d+)$/.exec(data.toString('latin1', 1, newline));
  if (match === null || Number(match[1]) !== entries || newline + 1 + idBytes > data.length) return undefined;
  return data.toString('hex', newline + 1, newline + 1 + idBytes);
}
