/**
 * Text that came from an agent, a gate or a repository (output lines, gate names and messages, error
 * messages quoting stderr, branch names) is untrusted: printed raw, an escape sequence could retitle the
 * window (`ESC ] 0 ; … BEL`), erase the line and overwrite it (`ESC [ 2K`, `\r`, backspace), reorder what
 * the user reads (bidi overrides, "Trojan Source"), or send device-control strings to the terminal. The
 * CLI passes every such piece through {@link sanitizeForTerminal} before writing it; the only escape
 * sequences that reach the terminal are the display's own.
 *
 * Sequences are recognised per ECMA-48 (https://ecma-international.org/publications-and-standards/standards/ecma-48/):
 * CSI, OSC and the other string controls, in their 7-bit (ESC-prefixed) and 8-bit (C1) forms.
 */

/** CSI: `ESC [` or U+009B, parameter bytes 0x30–0x3F, intermediate bytes 0x20–0x2F, one final byte 0x40–0x7E. */
const CSI = String.raw`(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?`;
/**
 * OSC, DCS, SOS, PM, APC (`ESC ]`, `ESC P`, `ESC X`, `ESC ^`, `ESC _` or their C1 forms): a string ended
 * by BEL or ST (`ESC \` or U+009C), by the next ESC, or by the end of the text when the terminator is
 * missing, so a cut sequence cannot leave its payload behind.
 */
const STRING_CONTROL = String.raw`(?:\x1b[\]PX^_]|[\x9d\x90\x98\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c|(?=\x1b)|$)`;
/** Any other escape: ESC, optional intermediates, one final byte (e.g. `ESC 7`, `ESC ( B`, `ESC c`). */
const OTHER_ESCAPE = String.raw`\x1b[\x20-\x2f]*[\x30-\x7e]?`;

const SEQUENCE = new RegExp(`${STRING_CONTROL}|${CSI}|${OTHER_ESCAPE}`, 'g');

/**
 * What is left after sequences are removed and must not reach the terminal as itself: C0 controls, DEL,
 * C1 controls, bidirectional embeddings/overrides/isolates and marks (U+061C, U+200E, U+200F,
 * U+202A–U+202E, U+2066–U+2069), and the Unicode line and paragraph separators.
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNSAFE_CHAR = /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/g;

export interface SanitizeOptions {
  /**
   * `escape` (default): a newline becomes the visible text `\n`, so the piece stays on one line and
   * cannot start a line of its own. `keep`: newlines stay (for multi-line messages the caller indents).
   */
  newlines?: 'escape' | 'keep';
}

function visible(char: string): string {
  switch (char) {
    case '\n':
      return '\\n';
    case '\r':
      return '\\r';
    case '\t':
      return ' ';
    default: {
      const code = char.codePointAt(0) ?? 0;
      return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
    }
  }
}

/**
 * Makes untrusted text safe to write to a terminal: escape sequences (CSI such as colours and cursor
 * moves, OSC such as window titles and hyperlinks, DCS/APC/PM/SOS strings, two-byte escapes) are removed;
 * every remaining control character (C0 including `\r`, backspace and BEL, DEL, C1), bidi control and
 * line separator is replaced by a visible escape (`\x07`, `\u{202e}`); a tab becomes a space. Printable
 * Unicode (accents, CJK, emoji) is kept as is.
 */
export function sanitizeForTerminal(text: string, options: SanitizeOptions = {}): string {
  const keepNewlines = options.newlines === 'keep';
  return text.replace(SEQUENCE, '').replace(UNSAFE_CHAR, (char) => (keepNewlines && char === '\n' ? char : visible(char)));
}
