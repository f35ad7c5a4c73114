import t from 'tap';
import { BILL_COLUMNS, BILL_SUMMARY_COLUMNS, BillError, parseBill, type BillRow } from '../../src/wechatpay/bill.js';

// The daily bill parser (after-the-sale.md §3) on bills shaped like the ones WeChat Pay writes: a BOM, CRLF,
// backticked values, refund rows with 0.00 order amounts and a negative fee, fewer or renamed columns in
// bills of other types and years, and every way a bill can be wrong.

const ALL_HEADER = BILL_COLUMNS.join(',');
const SUMMARY_HEADER = BILL_SUMMARY_COLUMNS.join(',');
const tick = (values: string[]): string => values.map((v) => '`' + v).join(',');

const SALE = [
  '2026-11-29 16:00:05', 'wx2421b1c4370ec43b', '1900000109', '0', 'BOX1', '4200001234202611291234567890',
  'BOX1-20261129-0001', 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o', 'MICROPAY', 'SUCCESS', 'OTHERS', 'CNY', '29.90', '0.00',
  '0', '0', '0.00', '0.00', '', '', '扫码盒-测试', 'REF-0001', '0.18000', '0.60%', '29.90', '0.00', '',
];
const REVOKED = [
  '2026-11-29 16:03:41', 'wx2421b1c4370ec43b', '1900000109', '0', 'BOX1', '4200001234202611299876543210',
  'BOX1-20261129-0002', 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o', 'MICROPAY', 'REVOKED', 'OTHERS', 'CNY', '12.34', '0.00',
  '0', '0', '0.00', '0.00', '', '', '扫码盒-测试', 'REF-0002', '0.00000', '0.60%', '12.34', '0.00', '',
];
const REFUND = [
  '2026-11-29 17:20:00', 'wx2421b1c4370ec43b', '1900000109', '0', 'BOX1', '4200001234202611281111111111',
  'BOX1-20261128-0042', 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o', 'MICROPAY', 'REFUND', 'CMB_DEBIT', 'CNY', '0.00', '0.00',
  '50300704112026112915372577017', 'BOX1-R-0042-1', '260.00', '0.00', 'ORIGINAL', 'SUCCESS', '扫码盒-测试', 'REF-0042',
  '-1.56000', '0.60%', '0.00', '260.00', '',
];
const SUMMARY = ['3', '42.24', '260.00', '0.00', '-1.38000', '42.24', '260.00'];

/** yuan text -> fen, for the test's own totals (two decimals at most in what these tests total). */
const fenOf = (yuan: string): number => Math.round(Number(yuan) * 100);
const yuanOf = (fen: number): string => `${fen < 0 ? '-' : ''}${Math.floor(Math.abs(fen) / 100)}.${String(Math.abs(fen) % 100).padStart(2, '0')}`;

/** The 7-field summary of rows in the ALL layout (or `header`'s), computed here, independently of the parser. */
function summaryOf(rows: string[][], header = ALL_HEADER): string[] {
  const names = header.split(',');
  const total = (name: string): string => {
    const at = names.indexOf(name);
    return yuanOf(at < 0 ? 0 : rows.reduce((s, row) => s + fenOf(row[at] || '0'), 0));
  };
  const fee = names.indexOf('手续费');
  const feeTotal = fee < 0 ? 0 : rows.reduce((s, row) => s + fenOf(row[fee] || '0'), 0);
  return [String(rows.length), total('应结订单金额'), total('退款金额'), total('充值券退款金额'), `${yuanOf(feeTotal)}000`, total('订单金额'), total('申请退款金额')];
}

/** A bill of these rows; its summary computed from them unless given (null: none). */
function bill(rows: string[][], opts: { bom?: boolean; eol?: string; header?: string; summary?: string[] | null; summaryHeader?: string } = {}): string {
  const eol = opts.eol ?? '\r\n';
  const lines = [opts.header ?? ALL_HEADER, ...rows.map(tick)];
  if (opts.summary !== null) lines.push(opts.summaryHeader ?? SUMMARY_HEADER, tick(opts.summary ?? summaryOf(rows, opts.header)));
  return (opts.bom === false ? '' : '\ufeff') + lines.join(eol) + eol;
}

const FIXTURE = bill([SALE, REVOKED, REFUND]);

function thrown(fn: () => unknown): BillError {
  try {
    fn();
  } catch (error) {
    if (error instanceof BillError) return error;
    throw error;
  }
  throw new Error('expected a BillError');
}

t.test('a realistic ALL bill: BOM, CRLF, SUCCESS, REVOKED and REFUND rows, summary', async (t) => {
  const b = parseBill(FIXTURE);
  t.same(b.header, [...BILL_COLUMNS], 'header without the BOM');
  t.equal(b.rows.length, 3);
  const [sale, revoked, refund] = b.rows as [BillRow, BillRow, BillRow];
  t.same(sale, {
    line: 2,
    time: '2026-11-29 16:00:05',
    outTradeNo: 'BOX1-20261129-0001',
    tradeState: 'SUCCESS',
    settlementFen: 2990,
    orderFen: 2990,
    extra: {},
    appId: 'wx2421b1c4370ec43b',
    mchId: '1900000109',
    subMchId: '0',
    deviceInfo: 'BOX1',
    transactionId: '4200001234202611291234567890',
    openId: 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o',
    tradeType: 'MICROPAY',
    bankType: 'OTHERS',
    currency: 'CNY',
    refundId: '0',
    outRefundNo: '0',
    refundType: '',
    refundStatus: '',
    body: '扫码盒-测试',
    attach: 'REF-0001',
    rate: '0.60%',
    rateRemark: '',
    couponFen: 0,
    refundFen: 0,
    couponRefundFen: 0,
    feeFen: 18,
    requestedRefundFen: 0,
  });
  t.equal(typeof sale.transactionId, 'string', '28 digits stay a string');
  t.equal(revoked.tradeState, 'REVOKED');
  t.equal(revoked.settlementFen, 1234);
  t.equal(revoked.line, 3);
  t.match(refund, {
    line: 4,
    tradeState: 'REFUND',
    settlementFen: 0,
    orderFen: 0,
    refundId: '50300704112026112915372577017',
    outRefundNo: 'BOX1-R-0042-1',
    refundFen: 26000,
    requestedRefundFen: 26000,
    refundType: 'ORIGINAL',
    refundStatus: 'SUCCESS',
    feeFen: -156,
    attach: 'REF-0042',
    bankType: 'CMB_DEBIT',
  });
  t.same(b.summary, {
    count: 3,
    settlementFen: 4224,
    refundFen: 26000,
    couponRefundFen: 0,
    feeFen: -138,
    orderFen: 4224,
    requestedRefundFen: 26000,
    extra: {},
  });
});

t.test('the same bill with LF, without a BOM', async (t) => {
  const b = parseBill(bill([SALE, REVOKED, REFUND], { bom: false, eol: '\n' }));
  t.same(b.rows, parseBill(FIXTURE).rows);
  t.same(parseBill(FIXTURE.replace(/\r\n$/, '')).rows, parseBill(FIXTURE).rows, 'no final line end');
  t.same(parseBill(FIXTURE.replace('\r\n', '\r\n\r\n')).rows.length, 3, 'blank lines are skipped');
});

t.test('columns in another order and an unknown column: found by name, the unknown one kept in extra', async (t) => {
  const order = BILL_COLUMNS.map((_, i) => i).reverse();
  const header = [...order.map((i) => BILL_COLUMNS[i]!), '新字段'].join(',');
  const rows = [SALE, REVOKED, REFUND].map((row, n) => [...order.map((i) => row[i]!), `x${n}`]);
  const b = parseBill(bill(rows, { header }));
  const plain = parseBill(FIXTURE).rows;
  t.equal(b.rows.length, 3);
  b.rows.forEach((row, n) => {
    t.same(row.extra, { 新字段: `x${n}` });
    t.same({ ...row, extra: {} }, plain[n]);
  });
});

t.test('a value holding a plain comma stays one value', async (t) => {
  const row = [...SALE];
  row[20] = '咖啡, 大杯';
  row[21] = 'a,b,,c';
  const b = parseBill(bill([row]));
  t.equal(b.rows[0]!.body, '咖啡, 大杯');
  t.equal(b.rows[0]!.attach, 'a,b,,c');
});

t.test('a bill_type=SUCCESS bill: no refund columns, their fields empty or null', async (t) => {
  const names = ['交易时间', '公众账号ID', '商户号', '特约商户号', '设备号', '微信订单号', '商户订单号', '用户标识', '交易类型', '交易状态', '付款银行', '货币种类', '应结订单金额', '代金券金额', '商品名称', '商户数据包', '手续费', '费率', '订单金额', '费率备注'];
  const pick = (row: string[]): string[] => names.map((name) => row[BILL_COLUMNS.indexOf(name)]!);
  const b = parseBill(bill([pick(SALE)], { header: names.join(','), summary: ['1', '29.90', '0.00', '0.00', '0.18000', '29.90', '0.00'] }));
  t.match(b.rows[0], {
    outTradeNo: 'BOX1-20261129-0001',
    settlementFen: 2990,
    orderFen: 2990,
    feeFen: 18,
    couponFen: 0,
    refundId: '',
    outRefundNo: '',
    refundType: '',
    refundStatus: '',
    refundFen: null,
    couponRefundFen: null,
    requestedRefundFen: null,
    extra: {},
  });
  t.equal(b.summary!.count, 1);
});

t.test('a bill_type=REFUND bill: the refund times are extra columns', async (t) => {
  const names = [...BILL_COLUMNS.slice(0, 14), '退款申请时间', '退款成功时间', ...BILL_COLUMNS.slice(14)];
  const row = [...REFUND.slice(0, 14), '2026-11-29 17:20:00', '2026-11-29 17:20:04', ...REFUND.slice(14)];
  const b = parseBill(bill([row], { header: names.join(','), summary: ['1', '0.00', '260.00', '0.00', '-1.56000', '0.00', '260.00'] }));
  t.same(b.rows[0]!.extra, { 退款申请时间: '2026-11-29 17:20:00', 退款成功时间: '2026-11-29 17:20:04' });
  t.equal(b.rows[0]!.refundFen, 26000);
});

t.test('an older bill: 总金额, 子商户号, coupon columns of another name, the five-column summary', async (t) => {
  const text =
    '交易时间,公众账号ID,商户号,子商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,总金额,代金券或立减优惠金额,微信退款单号,商户退款单号,退款金额,代金券或立减优惠退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率\n' +
    '`2014-11-10 16:33:45,`wx2421b1c4370ec43b,`10000100,`0,`1000,`1001690740201411100005734289,`1415640626,`085e9858e3ba5186aafcbaed1,`MICROPAY,`SUCCESS,`OTHERS,`CNY,`0.01,`0.0,`0,`0,`0,`0,`,`,`被扫支付测试,`订单额外描述,`0,`0.60%\n' +
    '总交易单数,总交易额,总退款金额,总代金券或立减优惠退款金额,手续费总金额\n' +
    '`1,`0.01,`0.0,`0.0,`0';
  const b = parseBill(text);
  t.match(b.rows[0], { subMchId: '0', deviceInfo: '1000', settlementFen: 1, orderFen: 1, couponFen: 0, refundFen: 0, couponRefundFen: 0, feeFen: 0, requestedRefundFen: null, rateRemark: '', extra: {} });
  t.same(b.summary, { count: 1, settlementFen: 1, refundFen: 0, couponRefundFen: 0, feeFen: 0, orderFen: 1, requestedRefundFen: null, extra: {} });
});

t.test('only 订单金额: settlementFen falls back to it; a header in backticks is read too', async (t) => {
  const b = parseBill('`交易时间,`商户订单号,`交易状态,`订单金额\n`2026-11-29 10:00:00,`A-1,`SUCCESS,`5.00\n总交易单数,订单总金额\n`1,`5.00\n');
  t.match(b.rows[0], { settlementFen: 500, orderFen: 500, feeFen: null, couponFen: null, appId: '' });
  t.same(b.header, ['交易时间', '商户订单号', '交易状态', '订单金额']);
});

t.test('amounts: every form the bill writes, exactly', async (t) => {
  const cases: Array<[string, number]> = [
    ['0.01', 1],
    ['-0.50', -50],
    ['1234567.89', 123456789],
    ['12.3', 1230],
    ['0', 0],
    ['-0.00', 0],
  ];
  const rows = cases.map(([yuan], i) => {
    const row = [...SALE];
    row[6] = `A-${i}`;
    row[12] = yuan;
    row[24] = yuan;
    row[22] = yuan;
    return row;
  });
  const b = parseBill(bill(rows));
  cases.forEach(([yuan, fen], i) => {
    t.equal(b.rows[i]!.settlementFen, fen, yuan);
    t.equal(b.rows[i]!.orderFen, fen, yuan);
    t.equal(b.rows[i]!.feeFen, fen, yuan);
  });
  const empty = [...SALE];
  empty[13] = '';
  t.equal(parseBill(bill([empty])).rows[0]!.couponFen, null, 'an empty optional amount is null');
});

t.test('every BillError names where, and none echoes a long line', async (t) => {
  const cases: Array<[string, string, RegExp, number | null, string | null]> = [
    ['empty', '', /empty/, null, null],
    ['blank lines only', '\ufeff\r\n \r\n', /empty/, null, null],
    ['an XML failure', '<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[No Bill Exist]]></return_msg></xml>', /XML/, null, null],
    ['no 商户订单号', '交易时间,交易状态,订单金额\n`t,`SUCCESS,`1.00', /商户订单号/, 1, null],
    ['no 交易状态', '交易时间,商户订单号,订单金额\n`t,`A,`1.00', /交易状态/, 1, null],
    ['no amount column', '交易时间,商户订单号,交易状态\n`t,`A,`SUCCESS', /amount column/, 1, null],
    ['a column named twice', '交易时间,商户订单号,交易状态,订单金额,订单金额', /twice/, 1, null],
    ['a column without a name', '交易时间,商户订单号,,交易状态,订单金额', /no name/, 1, null],
    ['a summary first', SUMMARY_HEADER + '\n' + tick(SUMMARY), /summary/, 1, null],
    ['a row with a value missing', bill([SALE, SALE.slice(1)]), /26 values, the header 27/, 3, null],
    ['a comma in an amount', bill([SALE, SALE.map((v, i) => (i === 12 ? '12,34' : v))]), /not an amount.*"12,34"/, 3, '应结订单金额'],
    ['a word for an amount', bill([SALE, SALE.map((v, i) => (i === 16 ? 'abc' : v))]), /not an amount/, 3, '退款金额'],
    ['a fraction of a fen', bill([SALE.map((v, i) => (i === 24 ? '29.905' : v))]), /not an amount/, 2, '订单金额'],
    ['a float in exponent form', bill([SALE.map((v, i) => (i === 24 ? '1e3' : v))]), /not an amount/, 2, '订单金额'],
    ['an empty essential amount', bill([SALE.map((v, i) => (i === 12 ? '' : v))]), /empty/, 2, '应结订单金额'],
    ['an empty out_trade_no', bill([SALE.map((v, i) => (i === 6 ? '' : v))]), /empty/, 2, '商户订单号'],
    ['a REFUND row without its number', bill([REFUND.map((v, i) => (i === 15 ? '' : v))]), /empty/, 2, '商户退款单号'],
    ['a REFUND row without its amount', bill([REFUND.map((v, i) => (i === 25 || i === 16 ? '' : v))], { summary: ['1', '0.00', '', '0.00', '-1.56000', '0.00', ''] }), /REFUND row must have its amount/, 2, '申请退款金额'],
    ['no summary', bill([SALE], { summary: null }), /ends without its summary/, 2, null],
    ['a row fewer than the summary counts', bill([SALE], { summary: SUMMARY }), /not whole: its summary says 3 row\(s\), its rows are 1/, 4, '总交易单数'],
    ['a settlement total that differs', bill([SALE], { summary: ['1', '29.91', '0.00', '0.00', '0', '29.90', '0.00'] }), /says 29\.91 yuan, its rows add up to 29\.90 yuan/, 4, '应结订单总金额'],
    ['an order total that differs', bill([SALE], { summary: ['1', '29.90', '0.00', '0.00', '0', '29.91', '0.00'] }), /29\.91 yuan, its rows add up to 29\.90/, 4, '订单总金额'],
    ['a requested-refund total that differs', bill([SALE], { summary: ['1', '29.90', '0.00', '0.00', '0', '29.9', '0.01'] }), /0\.01 yuan, its rows add up to 0\.00/, 4, '申请退款总金额'],
    ['a refund total that differs', bill([REFUND], { summary: ['1', '0.00', '259.99', '0.00', '0', '0.00', '260.00'] }), /259\.99 yuan, its rows add up to 260\.00/, 4, '退款总金额'],
    ['an empty trade state', bill([SALE.map((v, i) => (i === 9 ? '' : v))]), /empty/, 2, '交易状态'],
    ['a summary header without its row', ALL_HEADER + '\r\n' + tick(SALE) + '\r\n' + SUMMARY_HEADER + '\r\n', /summary row/, 3, null],
    ['a summary with a value missing', bill([SALE], { summary: SUMMARY.slice(1) }), /summary row has 6 values/, 4, null],
    ['a summary count that is not one', bill([SALE], { summary: ['3.5', ...SUMMARY.slice(1)] }), /not a count/, 4, '总交易单数'],
    ['a summary amount that is not one', bill([SALE], { summary: [...SUMMARY.slice(0, 2), 'x', ...SUMMARY.slice(3)] }), /not an amount/, 4, '退款总金额'],
    ['a summary without a total', bill([SALE], { summaryHeader: '总交易单数,退款总金额', summary: ['1', '0.00'] }), /total amount/, 3, null],
    ['text after the summary', FIXTURE + '`more\r\n', /after the summary/, 6, null],
  ];
  for (const [name, text, message, line, column] of cases) {
    const error = thrown(() => parseBill(text));
    t.equal(error.code, 'BAD_BILL', name);
    t.match(error.message, message, name);
    t.equal(error.line, line, `${name}: line`);
    t.equal(error.column, column, `${name}: column`);
    if (line !== null) t.match(error.message, new RegExp(`^line ${line}\\b`), `${name}: the message says the line`);
  }
  const huge = 'x'.repeat(100_000);
  const long = thrown(() => parseBill(bill([SALE.map((v, i) => (i === 12 ? huge : v))])));
  t.ok(long.message.length < 200, `a long value is clipped (${long.message.length} characters)`);
  const wide = thrown(() => parseBill(bill([[...SALE, huge]])));
  t.ok(wide.message.length < 200, 'a long line is never echoed');
  t.throws(() => parseBill(42 as unknown as string), BillError);
});

t.test('20,000 rows parse in well under a second', async (t) => {
  const rows: string[][] = [];
  for (let i = 0; i < 20_000; i++) {
    const row = [...(i % 10 === 9 ? REFUND : SALE)];
    row[6] = `BOX1-20261129-${String(i).padStart(5, '0')}`;
    rows.push(row);
  }
  const text = bill(rows, { summary: ['20000', '538200.00', '520000.00', '0.00', '0.00000', '538200.00', '520000.00'] });
  parseBill(text);
  const started = performance.now();
  const b = parseBill(text);
  const ms = performance.now() - started;
  t.equal(b.rows.length, 20_000);
  t.equal(b.rows[19_999]!.outTradeNo, 'BOX1-20261129-19999');
  t.ok(ms < 1000, `parsed ${(text.length / 1e6).toFixed(1)} M characters in ${ms.toFixed(0)} ms`);
});
