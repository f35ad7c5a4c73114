import t from 'tap';
import {
  checksumOf,
  MAX_LINE_BYTES,
  parseRegisterLine,
  withChecksum,
  type ParseResult,
} from '../../src/devices/register-protocol.js';
import { REF } from '../../src/ids.js';

const MAX = 1_000_000; // SCANBOX_MAX_AMOUNT's default: 10000.00 yuan

/** XOR by hand, independent of the code under test. */
function xorHex(text: string): string {
  let sum = 0;
  for (const byte of Buffer.from(text, 'utf8')) sum ^= byte;
  return sum.toString(16).toUpperCase().padStart(2, '0');
}

t.test('checksumOf: known values', async (t) => {
  // S 0x53 ^ T 0x54 = 0x07; ^ A 0x41 = 0x46; ^ T 0x54 = 0x12; ^ U 0x55 = 0x47; ^ S 0x53 = 0x14
  t.equal(checksumOf('STATUS'), '14');
  t.equal(checksumOf(''), '00');
  t.equal(checksumOf('A'), '41');
  t.equal(checksumOf('AB'), '03', 'leading zero kept');
  t.equal(checksumOf('AA'), '00');
  t.equal(checksumOf('z'), '7A', 'upper-case hex');
  // The NMEA 0183 sentence Wikipedia shows: $GPGGA,...*76, the checksum of what lies between $ and *.
  t.equal(checksumOf('GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,'), '76');
  t.equal(checksumOf('扫码'), xorHex('扫码'), 'UTF-8 bytes of a reply are what is summed');
  for (const text of ['PAY 150 E2E-CK', 'ACK R1', 'FAILED R1 NOTENOUGH balance too low']) {
    t.equal(checksumOf(text), xorHex(text), text);
  }
});

t.test('withChecksum appends *HH only when on', async (t) => {
  t.equal(withChecksum('STATUS READY', false), 'STATUS READY');
  t.equal(withChecksum('STATUS', true), 'STATUS*14');
  t.equal(withChecksum('ACK R1', true), `ACK R1*${xorHex('ACK R1')}`);
});

t.test('REF', async (t) => {
  t.ok(REF.test('R1'));
  t.ok(REF.test('a_B-9'));
  t.ok(REF.test('x'.repeat(32)));
  t.notOk(REF.test('x'.repeat(33)));
  t.notOk(REF.test(''));
  t.notOk(REF.test('R/1'));
  t.notOk(REF.test('R.1'));
});

const ok = (command: object, checksum = false): ParseResult => ({ ok: true, command, checksum }) as ParseResult;

t.test('valid commands', async (t) => {
  const cases: [string, ParseResult][] = [
    ['PAY 1234 R1', ok({ kind: 'PAY', amountFen: 1234, ref: 'R1' })],
    ['PAY 1 R1', ok({ kind: 'PAY', amountFen: 1, ref: 'R1' })],
    [`PAY ${MAX} R1`, ok({ kind: 'PAY', amountFen: MAX, ref: 'R1' })],
    ['PAY 100 sale_2024-001', ok({ kind: 'PAY', amountFen: 100, ref: 'sale_2024-001' })],
    [`PAY 100 ${'A'.repeat(32)}`, ok({ kind: 'PAY', amountFen: 100, ref: 'A'.repeat(32) })],
    ['CANCEL R1', ok({ kind: 'CANCEL', ref: 'R1' })],
    ['QUERY R1', ok({ kind: 'QUERY', ref: 'R1' })],
    ['STATUS', ok({ kind: 'STATUS' })],
    ['  PAY   1234    R1  ', ok({ kind: 'PAY', amountFen: 1234, ref: 'R1' })],
    ['STATUS   ', ok({ kind: 'STATUS' })],
    ['   CANCEL  R1', ok({ kind: 'CANCEL', ref: 'R1' })],
    ['REFUND R1 500 RF1', ok({ kind: 'REFUND', ref: 'R1', amountFen: 500, rid: 'RF1' })],
    [`REFUND R1 ${MAX} RF1`, ok({ kind: 'REFUND', ref: 'R1', amountFen: MAX, rid: 'RF1' })],
    [`REFUND ${'A'.repeat(32)} 1 ${'b'.repeat(32)}`, ok({ kind: 'REFUND', ref: 'A'.repeat(32), amountFen: 1, rid: 'b'.repeat(32) })],
    ['  REFUND  sale_7   1234  ref-7 ', ok({ kind: 'REFUND', ref: 'sale_7', amountFen: 1234, rid: 'ref-7' })],
    ['REFUND R1 500 R1', ok({ kind: 'REFUND', ref: 'R1', amountFen: 500, rid: 'R1' })],
    ['REFUND REFUND 1 REFUND', ok({ kind: 'REFUND', ref: 'REFUND', amountFen: 1, rid: 'REFUND' })],
    ['QUERY REFUND RF1', ok({ kind: 'QUERY_REFUND', rid: 'RF1' })],
    ['  QUERY   REFUND   RF1  ', ok({ kind: 'QUERY_REFUND', rid: 'RF1' })],
    ['QUERY REFUND REFUND', ok({ kind: 'QUERY_REFUND', rid: 'REFUND' })],
    // Two words: the sale query of the REF `REFUND`, exactly as before refunds existed.
    ['QUERY REFUND', ok({ kind: 'QUERY', ref: 'REFUND' })],
    ['QUERY  REFUND  ', ok({ kind: 'QUERY', ref: 'REFUND' })],
    ['QUERY refund', ok({ kind: 'QUERY', ref: 'refund' })],
    ['CANCEL REFUND', ok({ kind: 'CANCEL', ref: 'REFUND' })],
    ['PAY 100 REFUND', ok({ kind: 'PAY', amountFen: 100, ref: 'REFUND' })],
    ['TOTALS', ok({ kind: 'TOTALS', date: null })],
    ['  TOTALS  ', ok({ kind: 'TOTALS', date: null })],
    ['TOTALS 20260315', ok({ kind: 'TOTALS', date: '20260315' })],
    ['TOTALS 20000101', ok({ kind: 'TOTALS', date: '20000101' })],
    ['TOTALS 20991231', ok({ kind: 'TOTALS', date: '20991231' })],
    ['TOTALS 20240229', ok({ kind: 'TOTALS', date: '20240229' })],
    ['TOTALS 20000229', ok({ kind: 'TOTALS', date: '20000229' })],
  ];
  for (const [line, expected] of cases) t.same(parseRegisterLine(line, MAX), expected, JSON.stringify(line));
});

t.test('bad commands: code and an ASCII text an integrator can act on', async (t) => {
  const cases: [string, string, RegExp][] = [
    ['PAY abc R1', 'BAD_AMOUNT', /whole fen/],
    ['PAY -5 R1', 'BAD_AMOUNT', /whole fen/],
    ['PAY 0 R1', 'BAD_AMOUNT', /whole fen/],
    ['PAY 1.50 R1', 'BAD_AMOUNT', /whole fen/],
    ['PAY 1e3 R1', 'BAD_AMOUNT', /whole fen/],
    ['PAY 007 R1', 'BAD_AMOUNT', /leading zero/],
    ['PAY +5 R1', 'BAD_AMOUNT', /whole fen/],
    ['PAY 0x10 R1', 'BAD_AMOUNT', /whole fen/],
    [`PAY ${MAX + 1} R1`, 'BAD_AMOUNT', /^AMOUNT over the maximum of 10000\.00 yuan$/],
    ['PAY 99999999999999999999999 R1', 'BAD_AMOUNT', /over the maximum of 10000\.00 yuan/],
    ['PAY', 'BAD_AMOUNT', /^missing AMOUNT$/],
    ['PAY 100', 'BAD_REF', /^missing REF$/],
    ['PAY 100 R/1', 'BAD_REF', /1-32 of A-Z a-z 0-9 _ -/],
    [`PAY 100 ${'A'.repeat(33)}`, 'BAD_REF', /1-32/],
    ['PAY 100 R.1', 'BAD_REF', /1-32/],
    ['PAY 100 R1 EXTRA', 'BAD_LINE', /too many words: PAY AMOUNT REF/],
    ['CANCEL', 'BAD_REF', /^missing REF$/],
    ['CANCEL R/1', 'BAD_REF', /1-32/],
    ['CANCEL R1 R2', 'BAD_LINE', /too many words: CANCEL REF/],
    ['QUERY', 'BAD_REF', /^missing REF$/],
    [`QUERY ${'q'.repeat(33)}`, 'BAD_REF', /1-32/],
    ['QUERY R1 R2', 'BAD_LINE', /too many words: QUERY REF/],
    ['STATUS NOW', 'BAD_LINE', /too many words: STATUS$/],
    ['pay 100 R1', 'UNKNOWN_COMMAND', /upper case/],
    ['Status', 'UNKNOWN_COMMAND', /upper case/],
    ['REFUNDS R1 100 RF1', 'UNKNOWN_COMMAND', /^unknown command: send PAY, CANCEL, STATUS, QUERY, REFUND or TOTALS$/],
    ['refund R1 100 RF1', 'UNKNOWN_COMMAND', /^commands are upper case: PAY, CANCEL, STATUS, QUERY, REFUND or TOTALS$/],
    ['Totals', 'UNKNOWN_COMMAND', /upper case/],
    ['QUERY_REFUND RF1', 'UNKNOWN_COMMAND', /unknown command/],
    ['REFUND', 'BAD_REF', /^missing REF$/],
    ['REFUND R/1 100 RF1', 'BAD_REF', /^REF must be 1-32 of A-Z a-z 0-9 _ -$/],
    ['REFUND R1', 'BAD_AMOUNT', /^missing AMOUNT$/],
    ['REFUND R1 0 RF1', 'BAD_AMOUNT', /whole fen/],
    ['REFUND R1 1.50 RF1', 'BAD_AMOUNT', /whole fen/],
    ['REFUND R1 007 RF1', 'BAD_AMOUNT', /leading zero/],
    [`REFUND R1 ${MAX + 1} RF1`, 'BAD_AMOUNT', /^AMOUNT over the maximum of 10000\.00 yuan$/],
    ['REFUND R1 99999999999999999999999 RF1', 'BAD_AMOUNT', /over the maximum/],
    // PAY's word order by mistake: REF 100 is a valid REF, so the amount word is what is refused.
    ['REFUND 100 R1 RF1', 'BAD_AMOUNT', /whole fen/],
    ['REFUND R1 100', 'BAD_REF', /^missing RID$/],
    ['REFUND R1 100 RF/1', 'BAD_REF', /^RID must be 1-32 of A-Z a-z 0-9 _ -$/],
    [`REFUND R1 100 ${'r'.repeat(33)}`, 'BAD_REF', /^RID must be 1-32/],
    ['REFUND R1 100 RF1 X', 'BAD_LINE', /^too many words: REFUND REF AMOUNT RID$/],
    ['QUERY REFUND RF/1', 'BAD_REF', /^RID must be 1-32/],
    [`QUERY REFUND ${'r'.repeat(33)}`, 'BAD_REF', /^RID must be 1-32/],
    ['QUERY REFUND RF1 X', 'BAD_LINE', /^too many words: QUERY REFUND RID$/],
    ['QUERY REFUND RF1 X Y', 'BAD_LINE', /^too many words: QUERY REFUND RID$/],
    ['QUERY R1 RF1', 'BAD_LINE', /^too many words: QUERY REF$/],
    ['TOTALS 2026031', 'BAD_DATE', /^DATE must be YYYYMMDD, 8 digits/],
    ['TOTALS 202603150', 'BAD_DATE', /YYYYMMDD/],
    ['TOTALS 2026-03-15', 'BAD_DATE', /YYYYMMDD/],
    ['TOTALS TODAY', 'BAD_DATE', /YYYYMMDD/],
    ['TOTALS +2026031', 'BAD_DATE', /YYYYMMDD/],
    ['TOTALS 20260230', 'BAD_DATE', /^DATE 20260230 is not a day of the calendar$/],
    ['TOTALS 20250229', 'BAD_DATE', /not a day of the calendar/],
    ['TOTALS 21000229', 'BAD_DATE', /^DATE must be from 20000101 to 20991231$/],
    ['TOTALS 20261301', 'BAD_DATE', /not a day of the calendar/],
    ['TOTALS 20260400', 'BAD_DATE', /not a day of the calendar/],
    ['TOTALS 20260431', 'BAD_DATE', /not a day of the calendar/],
    ['TOTALS 19991231', 'BAD_DATE', /from 20000101 to 20991231/],
    ['TOTALS 21000101', 'BAD_DATE', /from 20000101 to 20991231/],
    ['TOTALS 00000000', 'BAD_DATE', /from 20000101/],
    ['TOTALS 20260315 X', 'BAD_LINE', /^too many words: TOTALS \[YYYYMMDD\]$/],
    ['HELLO', 'UNKNOWN_COMMAND', /unknown command/],
    ['', 'BAD_LINE', /empty/],
    ['    ', 'BAD_LINE', /empty/],
    ['PAY\t100 R1', 'BAD_LINE', /not printable/],
    ['PAY 100 R\u00e91', 'BAD_LINE', /not printable/],
    ['STATUS\u0000', 'BAD_LINE', /not printable/],
    ['X'.repeat(MAX_LINE_BYTES + 1), 'LINE_TOO_LONG', /256 bytes/],
  ];
  for (const [line, code, text] of cases) {
    const result = parseRegisterLine(line, MAX);
    const label = JSON.stringify(line.length > 40 ? line.slice(0, 40) + '...' : line);
    if (result.ok) {
      t.fail(`${label} was accepted`);
      continue;
    }
    t.equal(result.code, code, `${label} code`);
    t.match(result.text, text, `${label} text`);
    t.match(result.text, /^[\x20-\x7e]+$/, `${label} text is printable ASCII`);
    t.equal(result.checksum, false, `${label} no checksum`);
  }
});

t.test('a line of exactly 256 bytes is parsed, 257 is too long', async (t) => {
  const pad = ' '.repeat(MAX_LINE_BYTES - 'STATUS'.length);
  t.same(parseRegisterLine('STATUS' + pad, MAX), ok({ kind: 'STATUS' }));
  t.match(parseRegisterLine('STATUS' + pad + ' ', MAX), { ok: false, code: 'LINE_TOO_LONG' });
});

t.test('the maximum follows the configured SCANBOX_MAX_AMOUNT', async (t) => {
  t.match(parseRegisterLine('PAY 5001 R1', 5000), { ok: false, code: 'BAD_AMOUNT', text: 'AMOUNT over the maximum of 50.00 yuan' });
  t.match(parseRegisterLine('PAY 5000 R1', 5000), { ok: true, command: { amountFen: 5000 } });
  t.match(parseRegisterLine('REFUND R1 5001 RF1', 5000), { ok: false, code: 'BAD_AMOUNT', text: 'AMOUNT over the maximum of 50.00 yuan' }, 'a refund too');
  t.match(parseRegisterLine('REFUND R1 5000 RF1', 5000), { ok: true, command: { kind: 'REFUND', amountFen: 5000 } });
});

t.test('checksums', async (t) => {
  const body = 'PAY 150 E2E-CK';
  const sum = xorHex(body);
  t.same(parseRegisterLine(`${body}*${sum}`, MAX), ok({ kind: 'PAY', amountFen: 150, ref: 'E2E-CK' }, true), 'right');
  t.same(parseRegisterLine(`${body}*${sum.toLowerCase()}`, MAX), ok({ kind: 'PAY', amountFen: 150, ref: 'E2E-CK' }, true), 'lower-case hex accepted');
  t.same(parseRegisterLine('STATUS*14', MAX), ok({ kind: 'STATUS' }, true));
  t.same(parseRegisterLine('STATUS*14  ', MAX), ok({ kind: 'STATUS' }, true), 'spaces after *HH ignored');
  const spaced = '  STATUS ';
  t.same(parseRegisterLine(`${spaced}*${xorHex(spaced)}`, MAX), ok({ kind: 'STATUS' }, true), 'the sum covers the spaces before *');
  t.match(parseRegisterLine(` STATUS*14`, MAX), { ok: false, code: 'BAD_CHECKSUM' }, 'a leading space counts in the sum');

  const bad: [string, RegExp][] = [
    ['STATUS*00', /checksum is 14, line says 00/],
    [`${body}*${sum === 'FF' ? '00' : 'FF'}`, /checksum is/],
    ['STATUS*1', /two hex digits/],
    ['STATUS*144', /two hex digits/],
    ['STATUS*G1', /two hex digits/],
    ['STATUS*', /two hex digits/],
    ['STA*TUS', /two hex digits/],
    ['STATUS*14*14', /two hex digits/],
    ['PAY 100 R*1', /two hex digits/],
  ];
  for (const [line, text] of bad) {
    const result = parseRegisterLine(line, MAX);
    t.match(result, { ok: false, code: 'BAD_CHECKSUM', checksum: true }, `${line}: refused, and the ERR carries a checksum`);
    if (!result.ok) t.match(result.text, text, `${line} text`);
  }
});

t.test('checksums on the refund and totals commands', async (t) => {
  const cases: [string, ParseResult][] = [
    ['REFUND R1 500 RF1', ok({ kind: 'REFUND', ref: 'R1', amountFen: 500, rid: 'RF1' }, true)],
    ['QUERY REFUND RF1', ok({ kind: 'QUERY_REFUND', rid: 'RF1' }, true)],
    ['QUERY REFUND', ok({ kind: 'QUERY', ref: 'REFUND' }, true)],
    ['TOTALS', ok({ kind: 'TOTALS', date: null }, true)],
    ['TOTALS 20260315', ok({ kind: 'TOTALS', date: '20260315' }, true)],
  ];
  for (const [body, expected] of cases) {
    t.same(parseRegisterLine(`${body}*${xorHex(body)}`, MAX), expected, `${body} with its checksum`);
    t.same(parseRegisterLine(`${body}*${xorHex(body).toLowerCase()}  `, MAX), expected, `${body}: lower-case hex, spaces after`);
    const wrong = xorHex(body) === '00' ? '01' : '00';
    t.match(parseRegisterLine(`${body}*${wrong}`, MAX), { ok: false, code: 'BAD_CHECKSUM', checksum: true }, `${body} with a wrong one`);
  }
  for (const [body, code] of [
    ['TOTALS 20260230', 'BAD_DATE'],
    ['REFUND R1 100 RF/1', 'BAD_REF'],
    ['QUERY REFUND RF1 X', 'BAD_LINE'],
  ] as const) {
    t.match(parseRegisterLine(`${body}*${xorHex(body)}`, MAX), { ok: false, code, checksum: true }, `${body}: the ERR carries a checksum`);
  }
  t.match(parseRegisterLine('REFUND R*1 100 RF1', MAX), { ok: false, code: 'BAD_CHECKSUM' }, 'a * inside a word');
});

t.test('a valid checksum travels with an error too, so the ERR carries one', async (t) => {
  const body = 'PAY abc R1';
  t.match(parseRegisterLine(`${body}*${xorHex(body)}`, MAX), { ok: false, code: 'BAD_AMOUNT', checksum: true });
  t.match(parseRegisterLine(`*00`, MAX), { ok: false, code: 'BAD_LINE', checksum: true }, 'an empty body with a right sum');
  const unknown = 'HELLO';
  t.match(parseRegisterLine(`${unknown}*${xorHex(unknown)}`, MAX), { ok: false, code: 'UNKNOWN_COMMAND', checksum: true });
});

t.test('total: any string gives a result, never a throw', async (t) => {
  const samples = [
    '\r\n',
    '*',
    '**',
    '\uffff',
    '\ud800',
    'PAY 1 R1\n',
    'PAY  R1',
    'PAY 100 ' + 'R'.repeat(300),
    '扫码付款',
    'PAY 9007199254740993 R1',
    'PAY 100 R1*ZZ',
    '\u0000'.repeat(1000),
    'REFUND',
    'REFUND R1 9007199254740993 RF1',
    'QUERY REFUND',
    'QUERY REFUND REFUND REFUND',
    'TOTALS 99999999',
    'TOTALS 2026031\u00e9',
    'TOTALS 20260315*',
  ];
  let seed = 42;
  const random = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let i = 0; i < 2000; i++) {
    const length = Math.floor(random() * 40);
    let text = '';
    for (let j = 0; j < length; j++) text += ' *PAYSTUCNLQER0123456789AFaf-_/\t\u00e9'.charAt(Math.floor(random() * 36));
    samples.push(text);
  }
  for (const line of samples) {
    const result = parseRegisterLine(line, MAX);
    if (typeof result.ok !== 'boolean') t.fail(`no result for ${JSON.stringify(line)}`);
    if (!result.ok && !/^[\x20-\x7e]+$/.test(result.text)) t.fail(`non-ASCII text for ${JSON.stringify(line)}`);
  }
  t.pass(`${samples.length} strings parsed without a throw`);
  t.match(parseRegisterLine('PAY 1 R1', Number.NaN), { ok: false, code: 'BAD_AMOUNT' }, 'even with a nonsense maximum');
});
