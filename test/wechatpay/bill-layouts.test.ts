import t from 'tap';
import { BillError, cutBill, parseBill, type BillRow } from '../../src/wechatpay/bill.js';
import { billText, FAILURE_XML, truncated, type FixtureRow } from '../helpers/bills.js';

// Every real layout of WeChat Pay's bill (test/helpers/bills.ts writes them independently of the parser), read
// by column and summary names, checked against its own summary; and cutBill, which a backend uses to give one
// box its share of the merchant's bill.

const ROWS: FixtureRow[] = [
  { time: '2026-11-29 09:15:02', outTradeNo: 'BOX1ABCD00000001', state: 'SUCCESS', amountFen: 990, deviceInfo: 'BOX1', attach: 'R-1' },
  { time: '2026-11-29 10:20:30', outTradeNo: 'BOX1ABCD00000002', state: 'REVOKED', amountFen: 1234, deviceInfo: 'BOX1', attach: 'R-2' },
  { time: '2026-11-29 11:00:00', outTradeNo: 'BOX2WXYZ00000001', state: 'SUCCESS', amountFen: 4500, deviceInfo: 'BOX2', attach: 'S-1' },
  {
    time: '2026-11-29 16:33:45',
    outTradeNo: 'BOX1ABCD00000001',
    state: 'REFUND',
    amountFen: 990,
    deviceInfo: 'BOX1',
    attach: 'R-1',
    outRefundNo: 'BOX1ABCDR00000001',
    refundFen: 47,
  },
];

function thrown(fn: () => unknown): BillError {
  try {
    fn();
  } catch (error) {
    if (error instanceof BillError) return error;
    throw error;
  }
  throw new Error('expected a BillError');
}

const essentials = (rows: BillRow[]) =>
  rows.map((r) => ({ outTradeNo: r.outTradeNo, tradeState: r.tradeState, orderFen: r.orderFen, refund: r.requestedRefundFen ?? r.refundFen, outRefundNo: r.outRefundNo, deviceInfo: r.deviceInfo, attach: r.attach }));

t.test("today's ALL: BOM + CRLF, LF without the last line end, loose summary numbers, full-width colons", async (t) => {
  const variants = [
    billText('ALL', ROWS, { bom: true, eol: '\r\n' }),
    billText('ALL', ROWS, { eol: '\n', finalEol: false }),
    billText('ALL', ROWS, { bom: true, eol: '\r\n', loose: true, finalEol: false }),
    billText('ALL', ROWS, { fullWidthColons: true, loose: true }),
  ];
  t.match(variants[2]!, /\n`4\.0,`67\.24,`0\.47,`0\.0,`0\.33000,`67\.24,`0\.47$/, 'the loose summary as written');
  for (const text of variants) {
    const bill = parseBill(text);
    t.equal(bill.header.length, 27);
    t.same(essentials(bill.rows), [
      { outTradeNo: 'BOX1ABCD00000001', tradeState: 'SUCCESS', orderFen: 990, refund: 0, outRefundNo: '0', deviceInfo: 'BOX1', attach: 'R-1' },
      { outTradeNo: 'BOX1ABCD00000002', tradeState: 'REVOKED', orderFen: 1234, refund: 0, outRefundNo: '0', deviceInfo: 'BOX1', attach: 'R-2' },
      { outTradeNo: 'BOX2WXYZ00000001', tradeState: 'SUCCESS', orderFen: 4500, refund: 0, outRefundNo: '0', deviceInfo: 'BOX2', attach: 'S-1' },
      { outTradeNo: 'BOX1ABCD00000001', tradeState: 'REFUND', orderFen: 0, refund: 47, outRefundNo: 'BOX1ABCDR00000001', deviceInfo: 'BOX1', attach: 'R-1' },
    ]);
    t.match(bill.summary, { count: 4, settlementFen: 6724, refundFen: 47, orderFen: 6724, requestedRefundFen: 47 });
    t.equal(bill.rows[3]!.time, '2026-11-29 16:33:45', 'full-width colons read as colons');
    t.equal(bill.rows[0]!.feeFen, null, 'a fee of a fraction of a fen (0.05940) is not whole fen: null, and the bill is read');
  }
});

t.test('SUCCESS (20 columns) with a summary of 4, 5 or 7 fields', async (t) => {
  for (const successSummary of [4, 5, 7] as const) {
    const bill = parseBill(billText('SUCCESS', ROWS, { bom: true, successSummary, loose: successSummary === 5 }));
    t.equal(bill.header.length, 20);
    t.same(
      bill.rows.map((r) => [r.outTradeNo, r.orderFen, r.refundFen, r.outRefundNo]),
      [
        ['BOX1ABCD00000001', 990, null, ''],
        ['BOX2WXYZ00000001', 4500, null, ''],
      ],
      `${successSummary} summary fields`,
    );
    t.match(bill.summary, { count: 2, settlementFen: 5490, orderFen: 5490 });
  }
});

t.test('REFUND (29 columns): the refund times are kept, the refund read exactly', async (t) => {
  const bill = parseBill(billText('REFUND', ROWS, { eol: '\n', loose: true }));
  t.equal(bill.header.length, 29);
  t.same(essentials(bill.rows), [
    { outTradeNo: 'BOX1ABCD00000001', tradeState: 'REFUND', orderFen: 0, refund: 47, outRefundNo: 'BOX1ABCDR00000001', deviceInfo: 'BOX1', attach: 'R-1' },
  ]);
  t.same(Object.keys(bill.rows[0]!.extra), ['退款申请时间', '退款成功时间']);
  t.match(bill.summary, { count: 1, settlementFen: 0, refundFen: 47, requestedRefundFen: 47 });
});

t.test('legacy ALL (24 columns: 总金额, 子商户号 ...; the 5-field summary)', async (t) => {
  const bill = parseBill(billText('LEGACY', ROWS, { fullWidthColons: true, loose: true, finalEol: false }));
  t.equal(bill.header.length, 24);
  t.same(essentials(bill.rows).map((r) => [r.outTradeNo, r.tradeState, r.orderFen, r.refund]), [
    ['BOX1ABCD00000001', 'SUCCESS', 990, 0],
    ['BOX1ABCD00000002', 'REVOKED', 1234, 0],
    ['BOX2WXYZ00000001', 'SUCCESS', 4500, 0],
    ['BOX1ABCD00000001', 'REFUND', 0, 47],
  ]);
  t.same(bill.summary, { count: 4, settlementFen: 6724, refundFen: 47, couponRefundFen: 0, feeFen: 33, orderFen: 6724, requestedRefundFen: null, extra: {} });
});

t.test('the official example as written: `0` amounts, full-width colons, a 5-field summary with 0.0', async (t) => {
  const text =
    '交易时间,公众账号ID,商户号,子商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,总金额,代金券或立减优惠金额,微信退款单号,商户退款单号,退款金额,代金券或立减优惠退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率\r\n' +
    '`2014-11-10 16：33：45,`wx2421b1c4370ec43b,`10000100,`0,`1000,`1001690740201411100005734289,`1415640626,`085e9858e3ba5186aafcbaed1,`MICROPAY,`SUCCESS,`CFT,`CNY,`0.01,`0.0,`0,`0,`0,`0,`,`,`被扫支付测试,`订单额外描述,`0,`0.60%\r\n' +
    '`2014-11-10 16：46：14,`wx2421b1c4370ec43b,`10000100,`0,`1000,`1002780740201411100005729794,`1415635270,`085e9858e90ca40c0b5aee463,`MICROPAY,`SUCCESS,`CFT,`CNY,`0.01,`0.0,`0,`0,`0,`0,`,`,`被扫支付测试,`订单额外描述,`0,`0.60%\r\n' +
    '总交易单数,总交易额,总退款金额,总代金券或立减优惠退款金额,手续费总金额\r\n' +
    '`2,`0.02,`0.0,`0.0,`0';
  const bill = parseBill(text);
  t.same(bill.rows.map((r) => [r.time, r.outTradeNo, r.orderFen]), [
    ['2014-11-10 16:33:45', '1415640626', 1],
    ['2014-11-10 16:46:14', '1415635270', 1],
  ]);
  t.match(bill.summary, { count: 2, settlementFen: 2, refundFen: 0 });
});

t.test('columns nothing relies on never fail the bill; the ones reconciliation uses must be exact', async (t) => {
  const text = billText('ALL', ROWS, { bom: true });
  const lines = text.split('\r\n');
  const cells = lines[1]!.split(',`');
  // 代金券金额 (13), 手续费 (22), 费率 (23), 交易时间 (0): garbage in each, the bill still reads.
  cells[13] = 'n/a';
  cells[22] = '0.0594000001';
  cells[23] = '???';
  cells[0] = '\ufeff`';
  const loose = [...lines];
  loose[1] = cells.join(',`');
  const bill = parseBill(loose.join('\r\n'));
  t.match(bill.rows[0], { couponFen: null, feeFen: null, rate: '???', orderFen: 990 });
  // An exact column damaged: BAD_BILL naming line and column.
  for (const [at, column] of [
    [12, '应结订单金额'],
    [16, '退款金额'],
    [24, '订单金额'],
    [25, '申请退款金额'],
  ] as const) {
    const damaged = [...lines];
    const c = lines[1]!.split(',`');
    c[at] = '9.9O';
    damaged[1] = c.join(',`');
    const error = thrown(() => parseBill(damaged.join('\r\n')));
    t.equal(error.code, 'BAD_BILL');
    t.equal(error.line, 2, column);
    t.equal(error.column, column);
  }
});

t.test('a copy cut short is never read: at every line end and in the middle of every line', async (t) => {
  for (const layout of ['ALL', 'SUCCESS', 'REFUND', 'LEGACY'] as const) {
    const text = billText(layout, ROWS, { bom: true });
    const lineCount = text.split('\n').length - 1;
    for (let keep = 0; keep < lineCount; keep++) {
      const cut = truncated(text, keep);
      for (const part of [cut.atLineEnd, cut.midLine]) {
        if (part === text) continue;
        const error = thrown(() => parseBill(part));
        t.equal(error.code, 'BAD_BILL');
      }
    }
    t.ok(parseBill(text), `${layout} whole`);
  }
  const cut = truncated(billText('ALL', ROWS), 3).atLineEnd;
  t.match(thrown(() => parseBill(cut)).message, /^line 3: the bill ends without its summary .* after 2 row\(s\)/);
  // A row lost in the middle (a damaged copy): the summary's count says so, with both figures.
  const lines = billText('ALL', ROWS).split('\r\n');
  lines.splice(2, 1);
  t.match(thrown(() => parseBill(lines.join('\r\n'))).message, /^line 6, column 总交易单数: the bill is not whole: its summary says 4 row\(s\), its rows are 3/);
});

t.test('the failure XMLs are not bills', async (t) => {
  for (const xml of Object.values(FAILURE_XML)) t.match(thrown(() => parseBill(xml)).message, /XML/);
});

t.test('cutBill: one box kept, the layout whole, the summary recomputed', async (t) => {
  for (const layout of ['ALL', 'SUCCESS', 'REFUND', 'LEGACY'] as const) {
    for (const opts of [{ bom: true, eol: '\r\n' as const }, { eol: '\n' as const, loose: true, finalEol: false }]) {
      const text = billText(layout, ROWS, opts);
      const cut = cutBill(text, (row) => row.deviceInfo === 'BOX1');
      const whole = parseBill(text);
      const mine = parseBill(cut);
      t.same(mine.header, whole.header, `${layout}: the same header`);
      t.same(mine.rows.map((r) => ({ ...r, line: 0 })), whole.rows.filter((r) => r.deviceInfo === 'BOX1').map((r) => ({ ...r, line: 0 })), `${layout}: the kept rows as they were`);
      const kept = mine.rows;
      t.equal(mine.summary!.count, kept.length);
      t.equal(mine.summary!.settlementFen, kept.reduce((s, r) => s + r.settlementFen, 0));
      t.equal(cut.startsWith('\ufeff'), opts.bom === true, 'the BOM as it was');
      t.equal(cut.includes('\r\n'), opts.eol === '\r\n', 'the line ends as they were');
      const inLines = text.replace(/^\ufeff/, '').split(opts.eol);
      const outLines = cut.replace(/^\ufeff/, '').split(opts.eol);
      t.equal(outLines[0], inLines[0], 'the header line verbatim');
      for (const line of outLines.slice(1, 1 + kept.length)) t.ok(inLines.includes(line), 'a kept row verbatim');
      t.equal(outLines[kept.length + 1], inLines[inLines.findIndex((l) => l.startsWith('总交易单数'))], 'the summary header verbatim');
      t.equal(outLines[kept.length + 2]!.split(',').length, inLines[inLines.findIndex((l) => l.startsWith('总交易单数')) + 1]!.split(',').length, 'as many summary fields');
    }
  }
  const all = cutBill(billText('ALL', ROWS), (row) => row.deviceInfo === 'BOX1');
  t.match(all, /\r\n总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\r\n`3,`22\.24,`0\.47,`0\.00,`0\.05658,`22\.24,`0\.47\r\n$/);
  const none = cutBill(billText('ALL', ROWS), () => false);
  t.match(parseBill(none), { rows: [], summary: { count: 0, settlementFen: 0, orderFen: 0, refundFen: 0 } }, 'nothing kept: a whole bill of no row');
  t.same(parseBill(cutBill(billText('ALL', ROWS), () => true)).rows, parseBill(billText('ALL', ROWS)).rows, 'everything kept: every row');
  // A bill that is not whole is never cut into a whole-looking one.
  const lines = billText('ALL', ROWS).split('\r\n');
  lines.splice(1, 1);
  t.throws(() => cutBill(lines.join('\r\n'), () => true), BillError);
  t.throws(() => cutBill(truncated(billText('ALL', ROWS), 4).atLineEnd, () => true), BillError);
  // A summary field cutBill cannot total.
  const odd = billText('ALL', ROWS).replace('申请退款总金额', '神秘总金额');
  t.match(thrown(() => cutBill(odd, () => true)), { column: '神秘总金额' });
});
