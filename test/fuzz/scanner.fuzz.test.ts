import t from 'tap';
import fc from 'fast-check';
import { equal } from 'node:assert/strict';
import { classifyCode } from '../../src/devices/scanner.js';

/** classifyCode (contract §4): `wechat` exactly for 18 ASCII digits beginning 10-15, after trimming. */

/** The rule written out character by character, independently of the regular expression in the source. */
function isWechat(code: string): boolean {
  if (code.length !== 18) return false;
  for (const c of code) if (c < '0' || c > '9') return false;
  return code[0] === '1' && code[1]! >= '0' && code[1]! <= '5';
}

const digits = (min: number, max: number) => fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: min, maxLength: max });
/** White space that String.prototype.trim removes, and some it does not (U+200B, U+180E). */
const around = fc.string({
  unit: fc.constantFrom(' ', '\t', '\r', '\n', '\v', '\f', '\u00a0', '\u3000', '\ufeff', '\u2028', '\u200b', '\u180e', 'x', '0'),
  maxLength: 4,
});
const inputs = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 30 }),
  // Near the WeChat shape: any first two digits, 16-20 digits long, with white space or noise around.
  fc.tuple(around, digits(2, 2), digits(14, 18), around).map((parts) => parts.join('')),
  fc.tuple(around, fc.constantFrom('10', '11', '12', '13', '14', '15'), digits(16, 16), around).map((parts) => parts.join('')),
  // 18 digits with any first two: 09, 16, 19, 20 must not pass.
  fc.tuple(fc.stringMatching(/^[0-2][0-9]$/), digits(16, 16)).map((parts) => parts.join('')),
  // A digit swapped for a look-alike: full-width, Arabic-Indic, superscript.
  fc
    .tuple(fc.constantFrom('13'), digits(16, 16), fc.nat(17), fc.constantFrom('\uff11', '\u0661', '\u00b9', 'O', 'l', ' '))
    .map(([head, rest, at, alike]) => {
      const code = head + rest;
      return code.slice(0, at) + alike + code.slice(at + 1);
    }),
);

t.test("classifyCode is 'wechat' iff the trimmed input is 18 digits beginning 10-15; never throws", async (t) => {
  fc.assert(
    fc.property(inputs, (text) => {
      const { kind, code } = classifyCode(text);
      equal(code, text.trim());
      equal(kind === 'wechat', isWechat(text.trim()), `kind ${kind} for ${JSON.stringify(text)}`);
    }),
    { numRuns: 3000 },
  );
  t.pass('holds');
});
