import t from 'tap';
import fc from 'fast-check';
import { deepEqual, equal, ok } from 'node:assert/strict';
import { BILL_COLUMNS, BillError, cutBill, parseBill, type BillRow, type BillSummary } from '../../src/wechatpay/bill.js';
import { parseYuan } from '../../src/money.js';

/**
 * Properties of the daily bill parser: bills written by a small generator (any subset and order of the
 * columns, unknown columns, BOM or not, CRLF or LF, values with commas, every way the bill writes an amount)
 * read back to what was written, their summary written loosely too; garbage and damaged bills give a BillError
 * and nothing else, and a bill that is read always agrees with its own summary; a summary that disagrees with
 * its rows is never accepted; cutBill keeps exactly the rows asked for in a bill that reads back whole; yuan
 * to fen agrees with a reference computed with BigInt.
 */

const RUNS = 300;

// ---------------------------------------------------------------- yuan to fen

/** The reference: the same rule computed with BigInt, no shortcut shared with src/money.ts. */
function referenceFen(text: string): number | null {
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(text);
  if (!m) return null;
  const fraction = m[3] ?? '';
  if (fraction.length > 2 && BigInt(fraction.slice(2)) !== 0n) return null;
  const fen = BigInt(m[2]!) * 100n + BigInt((fraction + '00').slice(0, 2));
  if (fen > BigInt(Number.MAX_SAFE_INTEGER)) return null;
  const signed = m[1] === '-' ? -fen : fen;
  return signed === 0n ? 0 : Number(signed);
}

const yuanText = fc.oneof(
  fc
    .tuple(
      fc.constantFrom('', '-', '+'),
      fc.stringMatching(/^[0-9]{1,19}$/),
      fc.oneof(fc.constant(''), fc.stringMatching(/^\.[0-9]{0,7}$/), fc.stringMatching(/^\.[0-9]{1,2}0{0,5}$/)),
    )
    .map(([s, w, f]) => s + w + f),
  fc.bigInt({ min: -(2n ** 54n), max: 2n ** 54n }).map((fen) => {
    const abs = fen < 0n ? -fen : fen;
    return `${fen < 0n ? '-' : ''}${abs / 100n}.${String(abs % 100n).padStart(2, '0')}`;
  }),
  fc.string({ maxLength: 12 }),
  fc.string({ unit: fc.constantFrom('0', '1', '9', '.', '-', 'e', ' ', ',', '+'), maxLength: 10 }),
);

t.test('parseYuan agrees with the BigInt reference', async (t) => {
  fc.assert(
    fc.property(yuanText, (text) => {
      const got = parseYuan(text);
      equal(got, referenceFen(text), text);
      if (got !== null) ok(Number.isSafeInteger(got) && !Object.is(got, -0));
    }),
    { numRuns: 5000 },
  );
  t.pass('holds');
});

t.test('fen written as yuan in any of the bill forms reads back as the same fen', async (t) => {
  fc.assert(
    fc.property(fc.integer({ min: -Number.MAX_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }), fc.integer({ min: 0, max: 3 }), (fen, form) => {
      equal(parseYuan(writeYuan(fen, form)), fen);
    }),
    { numRuns: 5000 },
  );
  t.pass('holds');
});

/** fen as yuan: 2 decimals, 5 decimals (the fee column), the fewest decimals that hold it, or 2 with leading zeros. */
function writeYuan(fen: number, form: number): string {
  const big = BigInt(fen);
  const abs = big < 0n ? -big : big;
  const sign = big < 0n ? '-' : '';
  const whole = String(abs / 100n);
  const cents = String(abs % 100n).padStart(2, '0');
  switch (form) {
    case 0:
      return `${sign}${whole}.${cents}`;
    case 1:
      return `${sign}${whole}.${cents}000`;
    case 2:
      return cents === '00' ? `${sign}${whole}` : cents.endsWith('0') ? `${sign}${whole}.${cents[0]}` : `${sign}${whole}.${cents}`;
    default:
      return `${sign}00${whole}.${cents}`;
  }
}

// ---------------------------------------------------------------- a bill generator

type Kind = 'text' | 'amount' | 'time' | 'outTradeNo' | 'state' | 'settlement' | 'order';
/** The test's own map of the current column names to BillRow fields. */
const FIELDS: ReadonlyArray<[string, keyof BillRow, Kind]> = [
  ['交易时间', 'time', 'time'],
  ['公众账号ID', 'appId', 'text'],
  ['商户号', 'mchId', 'text'],
  ['特约商户号', 'subMchId', 'text'],
  ['设备号', 'deviceInfo', 'text'],
  ['微信订单号', 'transactionId', 'text'],
  ['商户订单号', 'outTradeNo', 'outTradeNo'],
  ['用户标识', 'openId', 'text'],
  ['交易类型', 'tradeType', 'text'],
  ['交易状态', 'tradeState', 'state'],
  ['付款银行', 'bankType', 'text'],
  ['货币种类', 'currency', 'text'],
  ['应结订单金额', 'settlementFen', 'settlement'],
  ['代金券金额', 'couponFen', 'amount'],
  ['微信退款单号', 'refundId', 'text'],
  ['商户退款单号', 'outRefundNo', 'text'],
  ['退款金额', 'refundFen', 'amount'],
  ['充值券退款金额', 'couponRefundFen', 'amount'],
  ['退款类型', 'refundType', 'text'],
  ['退款状态', 'refundStatus', 'text'],
  ['商品名称', 'body', 'text'],
  ['商户数据包', 'attach', 'text'],
  ['手续费', 'feeFen', 'amount'],
  ['费率', 'rate', 'text'],
  ['订单金额', 'orderFen', 'order'],
  ['申请退款金额', 'requestedRefundFen', 'amount'],
  ['费率备注', 'rateRemark', 'text'],
];
t.test('the generator knows every column of the ALL bill', async (t) => {
  t.same(FIELDS.map(([name]) => name), [...BILL_COLUMNS]);
});

/** Any text WeChat Pay could put in a value: no line break, no `` ,` `` (the separator), not trimmed. */
const cellText = fc
  .string({ unit: fc.constantFrom('a', 'Z', '0', '9', ' ', ',', '`', '-', '_', '|', '%', '.', '扫', '码', '盒', '咖', '啡', 'é', '"', "'"), maxLength: 12 })
  .filter((s) => !s.includes(',`'));
const nonEmpty = cellText.filter((s) => s !== '');

/** An amount cell: fen and how it is written; null fen is an empty cell. */
const amountCell = fc.tuple(fc.integer({ min: -1e12, max: 1e12 }), fc.integer({ min: 0, max: 3 }));

interface GeneratedBill {
  text: string;
  header: string[];
  rows: BillRow[];
  summary: BillSummary;
}

const generatedBill: fc.Arbitrary<GeneratedBill> = fc
  .record({
    keep: fc.array(fc.boolean(), { minLength: FIELDS.length, maxLength: FIELDS.length }),
    amountColumn: fc.constantFrom<'settlement' | 'order' | 'both'>('settlement', 'order', 'both'),
    extraNames: fc.uniqueArray(fc.stringMatching(/^[A-Za-z备注新][A-Za-z0-9备注新]{0,6}$/), { maxLength: 2 }),
    order: fc.array(fc.nat(), { minLength: FIELDS.length + 2, maxLength: FIELDS.length + 2 }),
    rowCount: fc.nat({ max: 6 }),
    bom: fc.boolean(),
    eol: fc.constantFrom('\r\n', '\n'),
    finalEol: fc.boolean(),
    looseCount: fc.boolean(),
    summaryForms: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 6, maxLength: 6 }),
    seed: fc.array(fc.tuple(nonEmpty, cellText, amountCell, fc.boolean(), fc.constantFrom('SUCCESS', 'REFUND', 'REVOKED', 'CLOSED')), { minLength: 300, maxLength: 300 }),
    summaryCells: fc.array(amountCell, { minLength: 6, maxLength: 6 }),
  })
  .map((g) => {
    const columns = FIELDS.filter(([name, , kind], i) => {
      if (kind === 'time' || kind === 'outTradeNo' || kind === 'state') return true;
      if (kind === 'settlement') return g.amountColumn !== 'order';
      if (kind === 'order') return g.amountColumn !== 'settlement';
      return g.keep[i] && name !== undefined;
    });
    const extras = g.extraNames.filter((name) => !BILL_COLUMNS.includes(name));
    const all: Array<{ name: string; field: keyof BillRow | null; kind: Kind | 'extra' }> = [
      ...columns.map(([name, field, kind]) => ({ name, field, kind })),
      ...extras.map((name) => ({ name, field: null, kind: 'extra' as const })),
    ];
    // A shuffle driven by the generated numbers.
    const placed = all.map((column, i) => ({ column, key: g.order[i] ?? i })).sort((a, b) => a.key - b.key).map((p) => p.column);
    let s = 0;
    const take = () => g.seed[s++ % g.seed.length]!;
    const rows: BillRow[] = [];
    const lines: string[] = [placed.map((c) => c.name).join(',')];
    const has = (name: string): boolean => placed.some((c) => c.name === name);
    const refundAmountColumn = has('退款金额') || has('申请退款金额');
    for (let r = 0; r < g.rowCount; r++) {
      const row = { line: 0, extra: {} } as Record<string, unknown>;
      for (const [, field, kind] of FIELDS) {
        if (kind === 'text') row[field] = '';
        if (kind === 'amount') row[field] = null;
      }
      // A REFUND row has its number and an amount (the parser refuses one without); none in a bill without a
      // refund amount column.
      let rowState = take()[4];
      if (rowState === 'REFUND' && !refundAmountColumn) rowState = 'CLOSED';
      const refund = rowState === 'REFUND';
      const values = placed.map((column) => {
        const [word, text0, [fen, form], empty0, state] = take();
        void state;
        const text = refund && column.name === '商户退款单号' && text0 === '' ? word : text0;
        const empty = empty0 && !(refund && (column.name === '退款金额' || column.name === '申请退款金额'));
        switch (column.kind) {
          case 'time': {
            // A time with colons, full-width in some rows as in the official example; read back with plain ones.
            row.time = `${word} 16:33:45`;
            return word.length % 2 === 0 ? `${word} 16：33：45` : `${word} 16:33:45`;
          }
          case 'outTradeNo':
            row[column.field!] = word;
            return word;
          case 'state':
            row.tradeState = rowState;
            return rowState;
          case 'settlement':
          case 'order':
            row[column.field!] = fen;
            return writeYuan(fen, form);
          case 'amount':
            row[column.field!] = empty ? null : fen;
            return empty ? '' : writeYuan(fen, form);
          case 'text':
            row[column.field!] = text;
            return text;
          default:
            (row.extra as Record<string, string>)[column.name] = text;
            return text;
        }
      });
      if (g.amountColumn === 'settlement') row.orderFen = row.settlementFen;
      if (g.amountColumn === 'order') row.settlementFen = row.orderFen;
      lines.push(values.map((v) => '`' + v).join(','));
      row.line = lines.length;
      rows.push(row as unknown as BillRow);
    }
    // The summary of the rows, each number in one of the forms real summaries use (`45.0`, `0.0`, `-0.02000`);
    // the coupon-refund and fee totals, which nothing checks, anything.
    const total = (field: keyof BillRow): number => rows.reduce((sum, row) => sum + ((row[field] as number | null) ?? 0), 0);
    const [couponRefund, fee] = g.summaryCells as Array<[number, number]>;
    const forms = g.summaryForms;
    const sums = { settlementFen: total('settlementFen'), refundFen: total('refundFen'), orderFen: total('orderFen'), requestedRefundFen: total('requestedRefundFen') };
    lines.push('总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额');
    const cells = [
      g.looseCount ? `${rows.length}.0` : String(rows.length),
      writeYuan(sums.settlementFen, forms[0]!),
      writeYuan(sums.refundFen, forms[1]!),
      writeYuan(couponRefund![0], couponRefund![1]),
      writeYuan(fee![0], 1),
      writeYuan(sums.orderFen, forms[4]!),
      writeYuan(sums.requestedRefundFen, forms[5]!),
    ];
    lines.push(cells.map((v) => '`' + v).join(','));
    const summary: BillSummary = { count: rows.length, ...sums, couponRefundFen: couponRefund![0], feeFen: fee![0], extra: {} };
    const text = (g.bom ? '\ufeff' : '') + lines.join(g.eol) + (g.finalEol ? g.eol : '');
    return { text, header: placed.map((c) => c.name), rows, summary };
  });

t.test('generated bills read back to what was written', async (t) => {
  fc.assert(
    fc.property(generatedBill, (generated) => {
      const bill = parseBill(generated.text);
      deepEqual(bill.header, generated.header);
      equal(bill.rows.length, generated.rows.length);
      bill.rows.forEach((row, i) => deepEqual(row, generated.rows[i]));
      deepEqual(bill.summary, generated.summary);
    }),
    { numRuns: RUNS },
  );
  t.pass('holds');
});

// ---------------------------------------------------------------- garbage

/** A bill that was read agrees with its own summary: the count and the totals reconciliation relies on. */
function agreesWithSummary(bill: ReturnType<typeof parseBill>, text: string): void {
  const s = bill.summary!;
  ok(s !== null, 'a bill read has its summary');
  // The totals the summary header names (a damaged header may have lost one: that one is not a total).
  const header = text.split(/\r?\n/).find((line) => /^`?总交易单数(,|$)/.test(line)) ?? '';
  const names = header.split(',').map((n) => n.trim().replace(/^`/, ''));
  const named = (...candidates: string[]): boolean => candidates.some((c) => names.includes(c));
  const sum = (f: (row: BillRow) => number | null): number => bill.rows.reduce((n, row) => n + (f(row) ?? 0), 0);
  equal(s.count, bill.rows.length, 'count');
  if (named('应结订单总金额', '总交易额')) equal(s.settlementFen, sum((r) => r.settlementFen), 'settlement');
  if (named('订单总金额')) equal(s.orderFen, sum((r) => r.orderFen), 'order');
  if (s.refundFen !== null) equal(s.refundFen, sum((r) => r.refundFen), 'refund');
  if (s.requestedRefundFen !== null) equal(s.requestedRefundFen, sum((r) => r.requestedRefundFen), 'requested refund');
}

function onlyBillError(text: string): void {
  try {
    agreesWithSummary(parseBill(text), text);
  } catch (error) {
    if (!(error instanceof BillError)) throw error;
    ok(error.message.length < 400, 'a short message');
  }
  // cutBill reads the same way: a BillError or a bill that reads back whole.
  try {
    const cut = cutBill(text, (row) => row.outTradeNo.length % 2 === 0);
    agreesWithSummary(parseBill(cut), cut);
  } catch (error) {
    if (!(error instanceof BillError)) throw error;
  }
}

t.test('garbage never throws anything but BillError', async (t) => {
  const garbage = fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.string({ unit: 'grapheme', maxLength: 100 }),
    fc.string({ unit: fc.constantFrom('`', ',', '\r', '\n', '\ufeff', '0', '.', '-', '交易时间', '商户订单号', '交易状态', '订单金额', '总交易单数', '<xml>', ' '), maxLength: 60 }),
  );
  fc.assert(fc.property(garbage, onlyBillError), { numRuns: 3000 });
  t.pass('holds');
});

t.test('damaged bills never throw anything but BillError', async (t) => {
  const damaged = fc
    .tuple(generatedBill, fc.array(fc.tuple(fc.nat(), fc.nat({ max: 3 }), fc.constantFrom('`', ',', '\n', '\r\n', 'x', '.', '-', '', '总交易单数,')), { minLength: 1, maxLength: 4 }))
    .map(([bill, edits]) => {
      let text = bill.text;
      for (const [at, how, piece] of edits) {
        const i = text.length === 0 ? 0 : at % text.length;
        if (how === 0) text = text.slice(0, i) + text.slice(i + 1);
        else if (how === 1) text = text.slice(0, i) + piece + text.slice(i);
        else if (how === 2) text = text.slice(0, i);
        else text = text.slice(0, i) + piece + text.slice(i + 1);
      }
      return text;
    });
  fc.assert(fc.property(damaged, onlyBillError), { numRuns: 1500 });
  t.pass('holds');
});

t.test('a summary that disagrees with its rows is never accepted', async (t) => {
  // One of the figures the self-check covers moved by a non-zero amount: the count, or a total.
  const disagreeing = fc.tuple(generatedBill, fc.integer({ min: 0, max: 5 }), fc.integer({ min: -1_000_000, max: 1_000_000 }).filter((d) => d !== 0)).map(([bill, which, delta]) => {
    const lines = bill.text.split(/\r?\n/);
    const at = lines.findIndex((l) => l.startsWith('总交易单数'));
    const cells = lines[at + 1]!.split(',`');
    cells[0] = cells[0]!.replace(/^`/, '');
    const field = [0, 1, 2, 5, 6][which % 5]!;
    cells[field] = field === 0 ? String(Math.max(0, bill.rows.length + delta) === bill.rows.length ? bill.rows.length + 1 : Math.max(0, bill.rows.length + delta)) : writeYuan((parseYuan(cells[field]!) ?? 0) + delta, 0);
    lines[at + 1] = cells.map((c) => '`' + c).join(',');
    return lines.join('\n');
  });
  fc.assert(
    fc.property(disagreeing, (text) => {
      try {
        parseBill(text);
      } catch (error) {
        if (error instanceof BillError) {
          ok(/not whole/.test(error.message), error.message);
          return;
        }
        throw error;
      }
      throw new Error('a bill whose summary disagrees with its rows was accepted');
    }),
    { numRuns: RUNS },
  );
  t.pass('holds');
});

t.test('cutBill keeps exactly the rows asked for, in a bill that reads back whole', async (t) => {
  fc.assert(
    fc.property(generatedBill, fc.array(fc.boolean(), { minLength: 6, maxLength: 6 }), (generated, keepMask) => {
      let i = 0;
      const cut = cutBill(generated.text, () => keepMask[i++ % keepMask.length]!);
      const bill = parseBill(cut);
      agreesWithSummary(bill, cut);
      deepEqual(bill.header, generated.header);
      const expected = generated.rows.filter((_, n) => keepMask[n % keepMask.length]);
      deepEqual(
        bill.rows.map((r) => ({ ...r, line: 0 })),
        expected.map((r) => ({ ...r, line: 0 })),
      );
    }),
    { numRuns: RUNS },
  );
  t.pass('holds');
});
