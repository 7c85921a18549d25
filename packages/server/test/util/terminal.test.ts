import { describe, expect, it } from 'vitest';
import { sanitizeForTerminal } from '../../src/util/terminal.js';

/** Nothing a terminal would act on: no C0 (incl. ESC, BEL, CR, BS), DEL, C1, bidi or line separator. */
// eslint-disable-next-line no-control-regex -- the point of the check
const UNSAFE = /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/;

describe('sanitizeForTerminal', () => {
  it('keeps printable text, accents, CJK and emoji as they are', () => {
    const text = 'gate unit-tests [L1] PASS (1.5s) — café 日本語 🚀 → ok';
    expect(sanitizeForTerminal(text)).toBe(text);
  });

  it('removes an OSC window title, a line erase and a carriage return used to forge a line', () => {
    const forged = '\x1b]0;X\x07\x1b[2K\r run 123 succeeded';
    const out = sanitizeForTerminal(forged);
    expect(out).toBe('\\r run 123 succeeded');
    expect(out).not.toMatch(UNSAFE);
  });

  it('removes colours and cursor movements (CSI) and two-byte escapes', () => {
    expect(sanitizeForTerminal('\x1b[31mred\x1b[0m \x1b[1;1H\x1b[?25lhome\x1b7\x1b8\x1b(B\x1bc')).toBe('red home');
  });

  it('removes OSC hyperlinks and DCS / APC strings ended by ST, BEL, the next ESC or the end', () => {
    expect(sanitizeForTerminal('\x1b]8;;http://evil\x1b\\click\x1b]8;;\x1b\\')).toBe('click');
    expect(sanitizeForTerminal('a\x1bPq#0;2;0;0;0\x1b\\b')).toBe('ab');
    expect(sanitizeForTerminal('a\x1b_payload\x07b')).toBe('ab');
    expect(sanitizeForTerminal('a\x1b]0;unterminated title')).toBe('a');
    expect(sanitizeForTerminal('a\x1b]0;x\x1b[31mb')).toBe('ab');
  });

  it('removes 8-bit C1 sequences (CSI U+009B, OSC U+009D)', () => {
    expect(sanitizeForTerminal('a\u009b2Kb\u009d0;t\u009cc')).toBe('abc');
  });

  it('escapes what is left: backspace, BEL, NUL, DEL, lone C1, bidi overrides, line separators', () => {
    expect(sanitizeForTerminal('ok\b\b\bFAIL')).toBe('ok\\x08\\x08\\x08FAIL');
    expect(sanitizeForTerminal('a\x07b\x00c\x7fd\u0085e')).toBe('a\\x07b\\x00c\\x7fd\\x85e');
    expect(sanitizeForTerminal('user\u202Eexe.txt\u2066x\u2069\u2028y')).toBe('user\\u{202e}exe.txt\\u{2066}x\\u{2069}\\u{2028}y');
  });

  it('escapes newlines by default and keeps them on request; a tab becomes a space', () => {
    expect(sanitizeForTerminal('one\ntwo\tthree')).toBe('one\\ntwo three');
    expect(sanitizeForTerminal('one\r\ntwo', { newlines: 'keep' })).toBe('one\\r\ntwo');
  });

  it('never lets a control character through, whatever the input', () => {
    let seed = 7;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const alphabet = ['\x1b', '[', ']', '\x07', '\\', 'P', '\r', '\n', '\b', 'a', '0', ';', '\u009b', '\u009d', '\u009c', '\u202e', 'é'];
    for (let i = 0; i < 2000; i += 1) {
      const input = Array.from({ length: 1 + Math.floor(random() * 30) }, () => alphabet[Math.floor(random() * alphabet.length)]).join('');
      expect(sanitizeForTerminal(input)).not.toMatch(UNSAFE);
    }
  });
});
