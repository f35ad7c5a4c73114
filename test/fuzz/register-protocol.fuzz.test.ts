import t from 'tap';
import fc from 'fast-check';
import { deepStrictEqual, equal, match, ok } from 'node:assert/strict';
import {
  checksumOf,
  MAX_LINE_BYTES,
  parseRegisterLine,
  withChecksum,
  type ParseResult,
  type RegisterCommand,
} from '../../src/devices/register-protocol.js';
import { REF } from '../../src/ids.js';

/**
 * Properties of the register line parser (contract §3). Run counts are sized so the whole fuzz folder
 * stays within a few seconds; fast-check picks a fresh seed each run and prints it with any counterexample.
 */

const RUNS = 800;
const CODES = ['BAD_AMOUNT', 'BAD_REF', 'BAD_DATE', 'UNKNOWN_COMMAND', 'BAD_CHECKSUM', 'LINE_TOO_LONG', 'BAD_LINE'];
const HEX = '0123456789ABCDEF';

/** XOR of the UTF-8 bytes as two uppercase hex digits, written independently of checksumOf. */
function xorHex(text: string): string {
  let sum = 0;
  for (const byte of new TextEncoder().encode(text)) sum ^= byte;
  return HEX[sum >> 4]! + HEX[sum & 15]!;
}

/** A TOTALS date the box must take, by a rule of its own: eight digits, 2000-2099, and Date agrees it exists. */
function acceptableDate(text: string): boolean {
  const match = /^(20[0-9]{2})([0-9]{2})([0-9]{2})$/.exec(text);
  if (!match) return false;
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const date = new Date(Date.UTC(year, month - 1, day));
  return date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}

/** Every result, whatever the input, is one of the documented shapes. */
function assertWellFormed(result: ParseResult, maxAmountFen: number): void {
  equal(typeof result.checksum, 'boolean');
  if (!result.ok) {
    ok(CODES.includes(result.code), `unknown error code ${result.code}`);
    match(result.text, /^[\x20-\x7e]+$/, 'error text is one line of printable ASCII');
    return;
  }
  const command = result.command;
  switch (command.kind) {
    case 'PAY':
      ok(Number.isSafeInteger(command.amountFen) && command.amountFen >= 1 && command.amountFen <= maxAmountFen);
      match(command.ref, REF);
      break;
    case 'CANCEL':
    case 'QUERY':
      match(command.ref, REF);
      break;
    case 'STATUS':
      deepStrictEqual(Object.keys(command), ['kind']);
      break;
    case 'REFUND':
      deepStrictEqual(Object.keys(command).sort(), ['amountFen', 'kind', 'ref', 'rid']);
      ok(Number.isSafeInteger(command.amountFen) && command.amountFen >= 1 && command.amountFen <= maxAmountFen);
      match(command.ref, REF);
      match(command.rid, REF);
      break;
    case 'QUERY_REFUND':
      deepStrictEqual(Object.keys(command).sort(), ['kind', 'rid']);
      match(command.rid, REF);
      break;
    case 'TOTALS':
      deepStrictEqual(Object.keys(command).sort(), ['date', 'kind']);
      ok(command.date === null || acceptableDate(command.date), `TOTALS date ${command.date}`);
      break;
    default:
      throw new Error(`unknown command kind ${(command as { kind: string }).kind}`);
  }
}

const spaces = (min: number, max: number) => fc.integer({ min, max }).map((n) => ' '.repeat(n));
const refArb = fc.stringMatching(/^[A-Za-z0-9_-]{1,32}$/);
const maxArb = fc.oneof(
  fc.constant(1_000_000),
  fc.integer({ min: 1, max: 1_000_000_000_000 }),
  fc.constant(Number.MAX_SAFE_INTEGER),
);
const sane = { maxAmountFen: 1_000_000 };
/** Every day TOTALS takes, as YYYYMMDD, made through Date (not the code under test). */
const dateArb = fc
  .integer({ min: Date.UTC(2000, 0, 1), max: Date.UTC(2099, 11, 31) })
  .map((ms) => new Date(ms).toISOString().slice(0, 10).replace(/-/g, ''));

/** Printable ASCII words: no space (the separator) and no `*` (the checksum marker). */
const wordChar = fc.integer({ min: 0x21, max: 0x7e }).filter((c) => c !== 0x2a).map((c) => String.fromCharCode(c));
const wordArb = (maxLength: number) => fc.string({ unit: wordChar, minLength: 1, maxLength });

/** A valid command as text (extra spaces allowed) with the command it must parse to. */
const commandArb = (max: number): fc.Arbitrary<{ text: string; command: RegisterCommand }> =>
  fc.oneof(
    fc
      .record({ lead: spaces(0, 6), s1: spaces(1, 6), s2: spaces(1, 6), trail: spaces(0, 6), amount: fc.integer({ min: 1, max }), ref: refArb })
      .map(({ lead, s1, s2, trail, amount, ref }) => ({
        text: `${lead}PAY${s1}${amount}${s2}${ref}${trail}`,
        command: { kind: 'PAY' as const, amountFen: amount, ref },
      })),
    fc
      .record({ verb: fc.constantFrom('CANCEL' as const, 'QUERY' as const), lead: spaces(0, 6), s1: spaces(1, 6), trail: spaces(0, 6), ref: refArb })
      .map(({ verb, lead, s1, trail, ref }) => ({ text: `${lead}${verb}${s1}${ref}${trail}`, command: { kind: verb, ref } })),
    fc
      .record({ lead: spaces(0, 6), trail: spaces(0, 6) })
      .map(({ lead, trail }) => ({ text: `${lead}STATUS${trail}`, command: { kind: 'STATUS' as const } })),
    fc
      .record({ lead: spaces(0, 6), s1: spaces(1, 6), s2: spaces(1, 6), s3: spaces(1, 6), trail: spaces(0, 6), ref: refArb, amount: fc.integer({ min: 1, max }), rid: refArb })
      .map(({ lead, s1, s2, s3, trail, ref, amount, rid }) => ({
        text: `${lead}REFUND${s1}${ref}${s2}${amount}${s3}${rid}${trail}`,
        command: { kind: 'REFUND' as const, ref, amountFen: amount, rid },
      })),
    fc
      .record({ lead: spaces(0, 6), s1: spaces(1, 6), s2: spaces(1, 6), trail: spaces(0, 6), rid: fc.oneof(refArb, fc.constant('REFUND')) })
      .map(({ lead, s1, s2, trail, rid }) => ({ text: `${lead}QUERY${s1}REFUND${s2}${rid}${trail}`, command: { kind: 'QUERY_REFUND' as const, rid } })),
    // Two words: the sale query of the REF `REFUND`.
    fc
      .record({ lead: spaces(0, 6), s1: spaces(1, 6), trail: spaces(0, 6) })
      .map(({ lead, s1, trail }) => ({ text: `${lead}QUERY${s1}REFUND${trail}`, command: { kind: 'QUERY' as const, ref: 'REFUND' } })),
    fc
      .record({ lead: spaces(0, 6), trail: spaces(0, 6) })
      .map(({ lead, trail }) => ({ text: `${lead}TOTALS${trail}`, command: { kind: 'TOTALS' as const, date: null } })),
    fc
      .record({ lead: spaces(0, 6), s1: spaces(1, 6), trail: spaces(0, 6), date: dateArb })
      .map(({ lead, s1, trail, date }) => ({ text: `${lead}TOTALS${s1}${date}${trail}`, command: { kind: 'TOTALS' as const, date } })),
  );

/**
 * Commands that take no further optional word: after `TOTALS` a word is its date, after `QUERY REFUND`
 * it is a RID, so neither is "a word too many".
 */
const completeCommandArb = (max: number) =>
  commandArb(max).filter(
    ({ command }) => !(command.kind === 'TOTALS' && command.date === null) && !(command.kind === 'QUERY' && command.ref === 'REFUND'),
  );

t.test('total: any string gives a well-formed result, never a throw', async (t) => {
  // Token soup reaches the interesting branches far more often than uniform noise.
  const token = fc.oneof(
    fc.constantFrom('PAY', 'CANCEL', 'QUERY', 'STATUS', 'REFUND', 'TOTALS', 'pay', 'Status', 'refund', ' ', '  ', '*', '*00', '*4a', '0', '1', '100', '-1', '1.5', '1e3', 'R1', 'a-b_c', '20260315', '20260230', '19991231', '\t', '\u00e9', '扫码', '\u0000', '\ud800'),
    fc.string({ maxLength: 8 }),
  );
  const lines = fc.oneof(
    fc.string({ maxLength: 300 }),
    fc.string({ unit: 'binary', maxLength: 300 }),
    fc.string({ unit: 'grapheme', maxLength: 100 }),
    // UTF-16 code units, lone surrogates included
    fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 100 }),
    fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes).toString('latin1')),
    fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes).toString('utf8')),
    fc.array(token, { maxLength: 12 }).map((parts) => parts.join('')),
    fc.array(token, { maxLength: 8 }).map((parts) => withChecksum(parts.join(''), true)),
  );
  const anyMax = fc.oneof(maxArb, fc.double(), fc.integer());
  fc.assert(
    fc.property(lines, anyMax, (line, max) => {
      assertWellFormed(parseRegisterLine(line, max), max);
    }),
    { numRuns: 3000 },
  );
  t.pass('holds');
});

t.test('a line over MAX_LINE_BYTES is LINE_TOO_LONG whatever it holds', async (t) => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', minLength: 1, maxLength: 400 }), (text) => {
      const line = text.length > MAX_LINE_BYTES ? text : text.padEnd(MAX_LINE_BYTES + 1, 'x');
      const result = parseRegisterLine(line, sane.maxAmountFen);
      deepStrictEqual([result.ok, !result.ok && result.code], [false, 'LINE_TOO_LONG']);
    }),
    { numRuns: RUNS },
  );
  t.pass('holds');
});

t.test('checksumOf is the XOR of the UTF-8 bytes as two uppercase hex digits', async (t) => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 80 }), (text) => {
      equal(checksumOf(text), xorHex(text));
      equal(withChecksum(text, false), text);
      equal(withChecksum(text, true), `${text}*${xorHex(text)}`);
    }),
    { numRuns: RUNS },
  );
  t.pass('holds');
});

t.test('every valid PAY parses to exactly its amount and ref, with extra spaces and with a checksum', async (t) => {
  const arb = maxArb.chain((max) =>
    fc.record({
      max: fc.constant(max),
      lead: spaces(0, 10),
      s1: spaces(1, 10),
      s2: spaces(1, 10),
      trail: spaces(0, 10),
      afterStar: spaces(0, 10),
      amount: fc.integer({ min: 1, max }),
      ref: refArb,
    }),
  );
  fc.assert(
    fc.property(arb, ({ max, lead, s1, s2, trail, afterStar, amount, ref }) => {
      const text = `${lead}PAY${s1}${amount}${s2}${ref}${trail}`;
      const command = { kind: 'PAY', amountFen: amount, ref };
      deepStrictEqual(parseRegisterLine(`PAY ${amount} ${ref}`, max), { ok: true, command, checksum: false });
      deepStrictEqual(parseRegisterLine(text, max), { ok: true, command, checksum: false });
      // The checksum covers the exact bytes before `*`, spaces included; spaces after `*HH` are ignored.
      deepStrictEqual(parseRegisterLine(`${text}*${xorHex(text)}${afterStar}`, max), { ok: true, command, checksum: true });
    }),
    { numRuns: RUNS },
  );
  t.pass('holds');
});

t.test('withChecksum(text, true) of any valid command parses back with checksum:true', async (t) => {
  fc.assert(
    fc.property(
      maxArb.chain((max) => fc.tuple(fc.constant(max), commandArb(max))),
      ([max, { text, command }]) => {
        deepStrictEqual(parseRegisterLine(text, max), { ok: true, command, checksum: false });
        deepStrictEqual(parseRegisterLine(withChecksum(text, true), max), { ok: true, command, checksum: true });
      },
    ),
    { numRuns: RUNS },
  );
  t.pass('holds');
});

t.test('a correct line with one checksum hex digit altered is BAD_CHECKSUM', async (t) => {
  const arb = maxArb.chain((max) =>
    fc.record({
      max: fc.constant(max),
      cmd: commandArb(max),
      at: fc.constantFrom(0, 1),
      delta: fc.integer({ min: 1, max: 15 }),
      lower: fc.boolean(),
    }),
  );
  fc.assert(
    fc.property(arb, ({ max, cmd, at, delta, lower }) => {
      const digits = xorHex(cmd.text).split('');
      let altered = HEX[(HEX.indexOf(digits[at]!) + delta) % 16]!;
      if (lower) altered = altered.toLowerCase();
      digits[at] = altered;
      const result = parseRegisterLine(`${cmd.text}*${digits.join('')}`, max);
      equal(result.ok, false);
      deepStrictEqual(result.ok ? null : [result.code, result.checksum], ['BAD_CHECKSUM', true]);
    }),
    { numRuns: RUNS },
  );
  t.pass('holds');
});

t.test('a PAY or REFUND amount that is not canonical digits is BAD_AMOUNT', async (t) => {
  const digits = fc.stringMatching(/^[0-9]{1,12}$/);
  const amountText = fc.oneof(
    fc.stringMatching(/^0[0-9]{0,15}$/), // leading zero, and 0 itself
    fc.tuple(fc.constantFrom('+', '-'), digits).map(([sign, d]) => sign + d),
    fc.stringMatching(/^[0-9]{0,8}\.[0-9]{0,4}$/),
    fc.stringMatching(/^[0-9]{1,6}(\.[0-9]{1,3})?[eE][+-]?[0-9]{1,3}$/),
    fc.stringMatching(/^0[xXbBoO][0-9A-Fa-f]{1,8}$/),
    fc.stringMatching(/^[0-9]{0,6}[A-Za-z][0-9A-Za-z]{0,6}$/),
    fc.constantFrom('Infinity', 'NaN', '1_000', '1,000', '0.00', '12.34'),
    wordArb(40),
  ).filter((text) => !/^[1-9][0-9]*$/.test(text) && /^[\x21-\x29\x2b-\x7e]+$/.test(text));
  fc.assert(
    fc.property(maxArb, amountText, refArb, (max, amount, ref) => {
      const result = parseRegisterLine(`PAY ${amount} ${ref}`, max);
      deepStrictEqual(result.ok ? result : result.code, 'BAD_AMOUNT', `amount text ${JSON.stringify(amount)}`);
      const refund = parseRegisterLine(`REFUND ${ref} ${amount} RF1`, max);
      deepStrictEqual(refund.ok ? refund : [refund.code, refund.text], result.ok ? result : [result.code, result.text], 'REFUND: the same answer as PAY');
    }),
    { numRuns: RUNS },
  );
  t.pass('holds');
});

t.test('a PAY or REFUND amount over the maximum is BAD_AMOUNT, however many digits', async (t) => {
  const arb = fc.oneof(
    fc.integer({ min: 1, max: 1_000_000_000_000 }).chain((max) =>
      fc.tuple(fc.constant(max), fc.integer({ min: max + 1, max: Number.MAX_SAFE_INTEGER }).map(String)),
    ),
    fc.tuple(maxArb, fc.stringMatching(/^[1-9][0-9]{16,60}$/)),
  );
  fc.assert(
    fc.property(arb, refArb, ([max, amount], ref) => {
      const result = parseRegisterLine(`PAY ${amount} ${ref}`, max);
      deepStrictEqual(result.ok ? result : result.code, 'BAD_AMOUNT');
      ok(!result.ok && /maximum/.test(result.text), 'said to be over the maximum, not malformed');
      const refund = parseRegisterLine(`REFUND ${ref} ${amount} RF1`, max);
      deepStrictEqual(refund.ok ? refund : [refund.code, refund.text], result.ok ? result : [result.code, result.text], 'REFUND: the same answer as PAY');
    }),
    { numRuns: RUNS },
  );
  t.pass('holds');
});

t.test('a REF or RID outside REF is BAD_REF naming the word, in PAY, CANCEL, QUERY and the refunds', async (t) => {
  const refChar = fc.constantFrom(...'ABCXYZabcxyz0189_-');
  const badChar = wordChar.filter((c) => !/[A-Za-z0-9_-]/.test(c));
  const badRef = fc.oneof(
    fc.string({ unit: refChar, minLength: 33, maxLength: 80 }),
    fc
      .tuple(fc.string({ unit: refChar, maxLength: 15 }), badChar, fc.string({ unit: wordChar, maxLength: 15 }))
      .map(([a, c, b]) => a + c + b),
  );
  const places: [word: 'REF' | 'RID', line: (bad: string) => string][] = [
    ['REF', (bad) => `PAY 100 ${bad}`],
    ['REF', (bad) => `CANCEL ${bad}`],
    ['REF', (bad) => `QUERY ${bad}`],
    ['REF', (bad) => `REFUND ${bad} 100 RF1`],
    ['RID', (bad) => `REFUND R1 100 ${bad}`],
    ['RID', (bad) => `QUERY REFUND ${bad}`],
  ];
  fc.assert(
    fc.property(badRef, fc.constantFrom(...places), fc.boolean(), (ref, [word, line], checksum) => {
      ok(!REF.test(ref));
      const result = parseRegisterLine(withChecksum(line(ref), checksum), sane.maxAmountFen);
      deepStrictEqual(result.ok ? result : [result.code, result.checksum], ['BAD_REF', checksum], `ref ${JSON.stringify(ref)}`);
      match(result.ok ? '' : result.text, new RegExp(`^${word} must be 1-32 of `), 'the text names the word that is wrong');
    }),
    { numRuns: RUNS },
  );
  t.pass('holds');
});

t.test('every valid REFUND parses to exactly its ref, amount and rid, with extra spaces and with a checksum', async (t) => {
  const arb = maxArb.chain((max) =>
    fc.record({
      max: fc.constant(max),
      gaps: fc.tuple(spaces(0, 10), spaces(1, 10), spaces(1, 10), spaces(1, 10), spaces(0, 10)),
      afterStar: spaces(0, 10),
      ref: refArb,
      amount: fc.integer({ min: 1, max }),
      rid: refArb,
    }),
  );
  fc.assert(
    fc.property(arb, ({ max, gaps: [lead, s1, s2, s3, trail], afterStar, ref, amount, rid }) => {
      const text = `${lead}REFUND${s1}${ref}${s2}${amount}${s3}${rid}${trail}`;
      const command = { kind: 'REFUND', ref, amountFen: amount, rid };
      deepStrictEqual(parseRegisterLine(`REFUND ${ref} ${amount} ${rid}`, max), { ok: true, command, checksum: false });
      deepStrictEqual(parseRegisterLine(text, max), { ok: true, command, checksum: false });
      deepStrictEqual(parseRegisterLine(`${text}*${xorHex(text)}${afterStar}`, max), { ok: true, command, checksum: true });
    }),
    { numRuns: RUNS },
  );
  t.pass('holds');
});

t.test('QUERY REFUND: two words query the sale REFUND, three the refund RID, four are BAD_LINE', async (t) => {
  const arb = fc.record({
    rid: refArb,
    more: fc.array(wordArb(8), { minLength: 1, maxLength: 3 }),
    gaps: fc.tuple(spaces(0, 4), spaces(1, 4), spaces(1, 4), spaces(0, 4)),
    checksum: fc.boolean(),
  });
  fc.assert(
    fc.property(arb, ({ rid, more, gaps: [lead, s1, s2, trail], checksum }) => {
      const parse = (text: string) => parseRegisterLine(withChecksum(text, checksum), sane.maxAmountFen);
      deepStrictEqual(parse(`${lead}QUERY${s1}REFUND${trail}`), { ok: true, command: { kind: 'QUERY', ref: 'REFUND' }, checksum });
      deepStrictEqual(parse(`${lead}QUERY${s1}REFUND${s2}${rid}${trail}`), { ok: true, command: { kind: 'QUERY_REFUND', rid }, checksum });
      const four = parse(`QUERY REFUND ${rid} ${more.join(' ')}`);
      deepStrictEqual(four.ok ? four : [four.code, four.text, four.checksum], ['BAD_LINE', 'too many words: QUERY REFUND RID', checksum]);
    }),
    { numRuns: RUNS },
  );
  t.pass('holds');
});

t.test('TOTALS with one word: a date from 20000101 to 20991231 that exists, else BAD_DATE', async (t) => {
  const word = fc.oneof(
    dateArb,
    fc.stringMatching(/^20[0-9]{6}$/), // many of them are not dates: 20260230, 20261301, 20260400
    fc.stringMatching(/^[0-9]{8}$/),
    fc.stringMatching(/^[0-9]{1,12}$/),
    dateArb.map((date) => `${date.slice(0, 4)}-${date.slice(4, 6)}-${date.slice(6)}`),
    wordArb(12),
  );
  fc.assert(
    fc.property(word, spaces(1, 4), fc.boolean(), (date, gap, checksum) => {
      const result = parseRegisterLine(withChecksum(`TOTALS${gap}${date}`, checksum), sane.maxAmountFen);
      if (acceptableDate(date)) deepStrictEqual(result, { ok: true, command: { kind: 'TOTALS', date }, checksum });
      else deepStrictEqual(result.ok ? result : [result.code, result.checksum], ['BAD_DATE', checksum], `date ${JSON.stringify(date)}`);
    }),
    { numRuns: RUNS },
  );
  t.pass('holds');
});

/** Printable ASCII lines without `*`, biased towards command-like text. */
const plainLine = fc.oneof(
  fc.string({ unit: fc.oneof(wordChar, fc.constant(' ')), maxLength: 60 }),
  fc
    .array(fc.oneof(fc.constantFrom('PAY', 'CANCEL', 'QUERY', 'STATUS', 'REFUND', 'TOTALS', 'status', '100', '0', '1.5', 'R1', 'a-b', '20260315', '20260230', '#'), wordArb(6)), { maxLength: 5 })
    .chain((words) => fc.tuple(fc.constant(words), fc.array(spaces(1, 3), { minLength: words.length + 1, maxLength: words.length + 1 })))
    .map(([words, gaps]) => gaps[0] + words.map((word, i) => word + gaps[i + 1]).join('')),
);

t.test('a correct checksum changes nothing but the checksum flag, for any line', async (t) => {
  fc.assert(
    fc.property(plainLine, spaces(0, 3), (text, afterStar) => {
      const plain = parseRegisterLine(text, sane.maxAmountFen);
      equal(plain.checksum, false);
      deepStrictEqual(parseRegisterLine(`${withChecksum(text, true)}${afterStar}`, sane.maxAmountFen), { ...plain, checksum: true });
    }),
    { numRuns: RUNS },
  );
  t.pass('holds');
});

t.test('a `*` that is not `*HH` at the very end is BAD_CHECKSUM, even with a checksum that matches', async (t) => {
  const arb = fc.record({
    text: plainLine,
    star: fc.nat(),
    // What follows the stray `*`: nothing, one hex digit, three, a non-hex pair, or `HH` followed by more text.
    after: fc.constantFrom('', '4', 'A', '41A', 'G1', '1g', '*', '00 X', '  '),
    sealed: fc.boolean(),
  });
  fc.assert(
    fc.property(arb, ({ text, star, after, sealed }) => {
      const at = star % (text.length + 1);
      let line = `${text.slice(0, at)}*${after}${text.slice(at)}`;
      if (/^[^*]*\*[0-9A-Fa-f]{2} *$/.test(line)) return; // happens to be a well-formed `*HH`: not this property's case
      if (sealed) line = withChecksum(line, true);
      const result = parseRegisterLine(line, sane.maxAmountFen);
      deepStrictEqual(result.ok ? result : [result.code, result.checksum], ['BAD_CHECKSUM', true], JSON.stringify(line));
    }),
    { numRuns: RUNS },
  );
  t.pass('holds');
});

t.test('a word too many after a valid command is BAD_LINE', async (t) => {
  fc.assert(
    fc.property(
      completeCommandArb(sane.maxAmountFen),
      fc.array(wordArb(8), { minLength: 1, maxLength: 3 }),
      fc.boolean(),
      ({ text }, extra, checksum) => {
        const result = parseRegisterLine(withChecksum(`${text} ${extra.join(' ')}`, checksum), sane.maxAmountFen);
        deepStrictEqual(result.ok ? result : [result.code, result.checksum], ['BAD_LINE', checksum]);
      },
    ),
    { numRuns: RUNS },
  );
  t.pass('holds');
});
