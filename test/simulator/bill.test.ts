import https from 'node:https';
import t, { type Test } from 'tap';
import { VirtualClock } from '../../src/clock.js';
import { GatewaySimulator, paymentCode, REFUND_SCENARIOS, type GatewaySimulatorOptions } from '../../src/simulator/gateway.js';
import { BILL_COLUMNS, BillError, parseBill, type Bill, type BillRow } from '../../src/wechatpay/bill.js';
import { WechatPayClient, type BillOutcome } from '../../src/wechatpay/client.js';
import { sign, type SignType } from '../../src/wechatpay/sign.js';
import { decodeXml, encodeXml } from '../../src/wechatpay/xml.js';

// The simulator's daily bill over real HTTPS and real signing, fetched with the box's client and read with the
// box's parser: the rows of a China-time day are the ledger of that day (a SUCCESS row per paid order, REVOKED
// for one reversed, a REFUND row per accepted refund), plain and gzip, the three bill types, No Bill Exist,
// Bill Creating before 09:00 the next day, the 3-month window, the hooks that plant discrepancies.

const M = { mchId: '1900000109', appId: 'wx2421b1c4370ec43b', apiKey: 'a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6' };
const HOUR = 3600_000;
/** 2026-11-29 00:00 China time (UTC+8). */
const DAY = Date.UTC(2026, 10, 29) - 8 * HOUR;
const NEXT_MORNING = DAY + 24 * HOUR + 9 * HOUR;

/** 0.60% of an amount, rounded half up to the fen: the test's own reference, in BigInt. */
const fee = (fen: number): number => Number((BigInt(fen) * 60n + 5000n) / 10000n);
const chinaText = (ms: number): string => new Date(ms + 8 * HOUR).toISOString().replace('T', ' ').slice(0, 19);

let codeSeq = 1;
const code = (): string => paymentCode(codeSeq++, '13');

interface World {
  sim: GatewaySimulator;
  clock: VirtualClock;
  client: WechatPayClient;
}

async function world(t: Test, options: Partial<GatewaySimulatorOptions> = {}, signType: SignType = 'HMAC-SHA256'): Promise<World> {
  const clock = new VirtualClock(DAY + 10 * HOUR);
  const sim = await GatewaySimulator.start({ ...M, clock, ...options });
  const client = new WechatPayClient({
    merchant: { mchId: M.mchId, appId: M.appId, apiKey: M.apiKey, signType },
    apiBase: sim.origin,
    ca: sim.pki.ca.certPem,
    certificate: { kind: 'pem', certPem: sim.pki.client.certPem, keyPem: sim.pki.client.keyPem },
    spbillCreateIp: '192.168.1.20',
  });
  t.teardown(async () => {
    await client.close();
    await sim.close();
  });
  return { sim, clock, client };
}

async function sale(w: World, at: number, outTradeNo: string, totalFee: number, authCode = code()): Promise<void> {
  w.clock.set(at);
  const outcome = await w.client.micropay({ outTradeNo, totalFee, authCode, body: '扫码盒-对账', deviceInfo: 'BOX1', attach: `REF-${outTradeNo}` });
  if (outcome.kind === 'unknown') throw new Error(`micropay ${outTradeNo}: ${outcome.message}`);
}

type Got = BillOutcome & { kind: 'bill' };

async function billOf(w: World, billDate: string, opts: { billType?: 'ALL' | 'SUCCESS' | 'REFUND'; gzip?: boolean } = {}): Promise<{ outcome: Got; bill: Bill }> {
  const outcome = await w.client.downloadbill({ billDate, ...opts });
  if (outcome.kind !== 'bill') throw new Error(`expected a bill, got ${JSON.stringify(outcome)}`);
  return { outcome, bill: parseBill(outcome.text) };
}

const byNo = (bill: Bill, no: string): BillRow[] => bill.rows.filter((row) => row.outTradeNo === no);

/** A day at the counter: sales, a reverse, refunds, a refused and an unfinished payment, a sale either side of midnight. */
async function busyDay(w: World): Promise<void> {
  const { sim, client, clock } = w;
  await sale(w, DAY + 10 * HOUR, 'BOX1-A', 1234);
  await sale(w, DAY + 11 * HOUR, 'BOX1-B', 2990);
  clock.set(DAY + 11 * HOUR + 60_000);
  const reversed = await client.reverse({ outTradeNo: 'BOX1-B' });
  if (reversed.kind !== 'success') throw new Error('reverse failed');
  await sale(w, DAY + 12 * HOUR, 'BOX1-C', 26000);
  clock.set(DAY + 15 * HOUR);
  if ((await client.refund({ outTradeNo: 'BOX1-C', outRefundNo: 'BOX1-C-R1', totalFee: 26000, refundFee: 500 })).kind !== 'success') throw new Error('refund');
  sim.setRefundScenario('BOX1-C', REFUND_SCENARIOS.stuck);
  clock.set(DAY + 16 * HOUR);
  if ((await client.refund({ outTradeNo: 'BOX1-C', outRefundNo: 'BOX1-C-R2', totalFee: 26000, refundFee: 1000 })).kind !== 'success') throw new Error('refund');
  const refused = code();
  sim.setScenario(refused, { outcome: 'NOTENOUGH' });
  await sale(w, DAY + 17 * HOUR, 'BOX1-D', 100, refused);
  const waiting = code();
  sim.setScenario(waiting, { outcome: 'userpaying' });
  await sale(w, DAY + 18 * HOUR, 'BOX1-E', 200, waiting);
  clock.set(DAY + 18 * HOUR + 30_000);
  await client.reverse({ outTradeNo: 'BOX1-E' });
  await sale(w, DAY + 24 * HOUR - 1000, 'BOX1-F', 1);
  await sale(w, DAY + 24 * HOUR, 'BOX1-G', 5000);
}

t.test('the bill of a day is the ledger of that day', async (t) => {
  const w = await world(t);
  await busyDay(w);
  w.clock.set(NEXT_MORNING + 60_000);
  const { outcome, bill } = await billOf(w, '20261129');
  t.equal(outcome.gzip, false);
  t.ok(outcome.text.startsWith('\ufeff交易时间,'), 'a byte-order mark, then the header');
  t.ok(outcome.text.endsWith('\r\n') && !/[^\r]\n/.test(outcome.text), 'CRLF line ends');
  t.same(bill.header, [...BILL_COLUMNS]);
  t.same(
    bill.rows.map((row) => `${row.outTradeNo} ${row.tradeState}`),
    ['BOX1-A SUCCESS', 'BOX1-B REVOKED', 'BOX1-C SUCCESS', 'BOX1-C REFUND', 'BOX1-C REFUND', 'BOX1-F SUCCESS'],
    'paid orders, the reversed one REVOKED, each accepted refund; no refused, unfinished or next-day order',
  );
  const ledger = new Map(w.sim.ledger().map((entry) => [entry.outTradeNo, entry]));
  for (const row of bill.rows.filter((r) => r.tradeState !== 'REFUND')) {
    const entry = ledger.get(row.outTradeNo)!;
    t.match(row, {
      transactionId: entry.transactionId,
      settlementFen: entry.totalFee,
      orderFen: entry.totalFee,
      couponFen: 0,
      refundFen: 0,
      requestedRefundFen: 0,
      refundId: '0',
      outRefundNo: '0',
      deviceInfo: 'BOX1',
      attach: entry.attach,
      body: '扫码盒-对账',
      appId: M.appId,
      mchId: M.mchId,
      subMchId: '0',
      tradeType: 'MICROPAY',
      currency: 'CNY',
      rate: '0.60%',
    }, row.outTradeNo);
  }
  const [a, b, c] = [byNo(bill, 'BOX1-A')[0]!, byNo(bill, 'BOX1-B')[0]!, byNo(bill, 'BOX1-C')[0]!];
  t.equal(a.time, '2026-11-29 10:00:00', 'China time of the payment');
  t.equal(a.feeFen, fee(1234));
  t.equal(b.feeFen, 0, 'a reversed order keeps no fee');
  t.equal(c.feeFen, fee(26000));
  t.equal(byNo(bill, 'BOX1-F')[0]!.time, '2026-11-29 23:59:59');

  const refunds = new Map(w.sim.refunds().map((r) => [r.outRefundNo, r]));
  const refundRows = bill.rows.filter((row) => row.tradeState === 'REFUND');
  for (const row of refundRows) {
    const r = refunds.get(row.outRefundNo)!;
    t.match(row, {
      time: chinaText(r.requestedAt),
      transactionId: r.transactionId,
      refundId: r.refundId,
      settlementFen: 0,
      orderFen: 0,
      refundFen: r.refundFee,
      requestedRefundFen: r.refundFee,
      couponRefundFen: 0,
      feeFen: -fee(r.refundFee),
      refundType: 'ORIGINAL',
      deviceInfo: 'BOX1',
      attach: 'REF-BOX1-C',
    }, row.outRefundNo);
  }
  t.same(refundRows.map((row) => `${row.outRefundNo} ${row.refundStatus}`), ['BOX1-C-R1 SUCCESS', 'BOX1-C-R2 PROCESSING']);

  const sum = (f: (row: BillRow) => number | null): number => bill.rows.reduce((s, row) => s + (f(row) ?? 0), 0);
  t.same(bill.summary, {
    count: 6,
    settlementFen: 1234 + 2990 + 26000 + 1,
    refundFen: 1500,
    couponRefundFen: 0,
    feeFen: sum((row) => row.feeFen),
    orderFen: 1234 + 2990 + 26000 + 1,
    requestedRefundFen: 1500,
    extra: {},
  });
  t.equal(bill.summary!.feeFen, fee(1234) + fee(26000) + fee(1) - fee(500) - fee(1000));

  w.clock.set(NEXT_MORNING + 24 * HOUR);
  const next = (await billOf(w, '20261130')).bill;
  t.same(next.rows.map((row) => row.outTradeNo), ['BOX1-G'], 'midnight China time starts the next bill');
});

t.test('gzip: the same bill, zipped on the wire', async (t) => {
  const w = await world(t, {}, 'MD5');
  await busyDay(w);
  w.clock.set(NEXT_MORNING);
  const plain = await billOf(w, '20261129');
  const zipped = await billOf(w, '20261129', { gzip: true });
  t.equal(zipped.outcome.gzip, true);
  t.equal(zipped.outcome.text, plain.outcome.text, 'the same text once unzipped');
  t.ok(zipped.outcome.bytes < Buffer.byteLength(plain.outcome.text), `${zipped.outcome.bytes} bytes zipped`);
  t.same(zipped.bill, plain.bill);
});

t.test('bill_type SUCCESS and REFUND', async (t) => {
  const w = await world(t, { billBom: false });
  await busyDay(w);
  w.clock.set(NEXT_MORNING);
  const success = (await billOf(w, '20261129', { billType: 'SUCCESS' })).bill;
  t.equal(success.header.length, 20);
  t.notOk(success.header.includes('退款金额'), 'no refund columns');
  t.same(success.rows.map((row) => row.outTradeNo), ['BOX1-A', 'BOX1-C', 'BOX1-F']);
  t.equal(success.rows[0]!.refundFen, null);
  t.equal(success.summary!.count, 3);

  const { outcome, bill: refund } = await billOf(w, '20261129', { billType: 'REFUND' });
  t.ok(outcome.text.startsWith('交易时间,'), 'billBom: false');
  t.same(refund.rows.map((row) => row.outRefundNo), ['BOX1-C-R1', 'BOX1-C-R2']);
  const r1 = w.sim.refundEntry('BOX1-C-R1')!;
  t.equal(refund.rows[0]!.time, '2026-11-29 12:00:00', 'a REFUND bill writes the payment time in 交易时间');
  t.same(refund.rows[0]!.extra, { 退款申请时间: chinaText(r1.requestedAt), 退款成功时间: chinaText(r1.successAt!) });
  t.same(refund.rows[1]!.extra, { 退款申请时间: '2026-11-29 16:00:00', 退款成功时间: '' }, 'still PROCESSING');
  t.equal(refund.summary!.refundFen, 1500);

  w.clock.set(NEXT_MORNING + 24 * HOUR);
  const none = await w.client.downloadbill({ billDate: '20261130', billType: 'REFUND' });
  t.equal(none.kind, 'no_bill', 'a day with sales but no refund has no REFUND bill');
});

t.test('a refund asked for the next day is in the next day’s bill; its status is the one at 09:00', async (t) => {
  const w = await world(t);
  await sale(w, DAY + 20 * HOUR, 'BOX1-H', 800);
  w.sim.setRefundScenario('BOX1-H', REFUND_SCENARIOS.toBalance);
  w.clock.set(DAY + 24 * HOUR + 8 * HOUR);
  t.equal((await w.client.refund({ outTradeNo: 'BOX1-H', outRefundNo: 'BOX1-H-R', totalFee: 800, refundFee: 800 })).kind, 'success');
  w.clock.set(DAY + 48 * HOUR + 12 * HOUR);
  const first = (await billOf(w, '20261129')).bill;
  t.same(first.rows.map((row) => `${row.outTradeNo} ${row.tradeState}`), ['BOX1-H SUCCESS'], 'the sale stays a SUCCESS row');
  const second = (await billOf(w, '20261130')).bill;
  t.match(second.rows, [{ outTradeNo: 'BOX1-H', tradeState: 'REFUND', refundFen: 800, refundStatus: 'SUCCESS', feeFen: -fee(800) }]);
});

t.test('No Bill Exist, Bill Creating, and the 3-month window', async (t) => {
  const w = await world(t);
  await sale(w, DAY + 10 * HOUR, 'BOX1-N', 100);
  w.clock.set(NEXT_MORNING - 1000);
  const early = await w.client.downloadbill({ billDate: '20261129' });
  t.match(early, { kind: 'not_ready', message: 'Bill Creating' }, 'before 09:00 the next day');
  const today = await w.client.downloadbill({ billDate: '20261130' });
  t.equal(today.kind, 'not_ready', "today's bill is never ready by default");
  w.clock.set(NEXT_MORNING);
  t.equal((await w.client.downloadbill({ billDate: '20261129' })).kind, 'bill', 'at 09:00 it is');
  t.match(await w.client.downloadbill({ billDate: '20261128' }), { kind: 'no_bill', message: 'No Bill Exist' }, 'a day without trades');

  const tooOld = await w.client.downloadbill({ billDate: '20260829' });
  t.match(tooOld, { kind: 'unknown', failure: 'RETURN_FAIL', message: /invalid bill_date/ });
  t.equal((await w.client.downloadbill({ billDate: '20260830' })).kind, 'no_bill', 'exactly 3 months back is in the window');
  t.match(await w.client.downloadbill({ billDate: '20261201' }), { kind: 'unknown', failure: 'RETURN_FAIL', message: /invalid bill_date/ }, 'a future day');
});

t.test("billReadyAfterMs lets a test fetch today's bill, as it stands now", async (t) => {
  const w = await world(t, { billReadyAfterMs: -24 * HOUR });
  await sale(w, DAY + 10 * HOUR, 'BOX1-T1', 300);
  w.clock.set(DAY + 10 * HOUR + 5000);
  t.same((await billOf(w, '20261129')).bill.rows.map((row) => row.outTradeNo), ['BOX1-T1']);
  await sale(w, DAY + 11 * HOUR, 'BOX1-T2', 400);
  t.same((await billOf(w, '20261129')).bill.rows.map((row) => row.outTradeNo), ['BOX1-T1', 'BOX1-T2']);
  await t.rejects(GatewaySimulator.start({ ...M, billReadyAfterMs: -25 * HOUR }), TypeError);
});

t.test('hooks plant discrepancies: a row nobody sold, a row left out, an amount changed, a cell unreadable', async (t) => {
  const w = await world(t);
  await sale(w, DAY + 10 * HOUR, 'BOX1-P1', 1000);
  await sale(w, DAY + 11 * HOUR, 'BOX1-P2', 2000);
  w.clock.set(DAY + 12 * HOUR);
  await w.client.refund({ outTradeNo: 'BOX1-P2', outRefundNo: 'BOX1-P2-R', totalFee: 2000, refundFee: 700 });
  w.clock.set(NEXT_MORNING);

  w.sim.plantBillRow({ at: DAY + 13 * HOUR, outTradeNo: 'OTHER-BOX-1', settlementFen: 4200, deviceInfo: 'BOX9' });
  w.sim.plantBillRow({ at: DAY - 3 * HOUR, outTradeNo: 'OTHER-BOX-2', settlementFen: 1 });
  let bill = (await billOf(w, '20261129')).bill;
  t.match(byNo(bill, 'OTHER-BOX-1'), [{ tradeState: 'SUCCESS', settlementFen: 4200, orderFen: 4200, feeFen: fee(4200), deviceInfo: 'BOX9', refundId: '0' }]);
  t.same(byNo(bill, 'OTHER-BOX-2'), [], 'a planted row is in the bill of its own day');
  t.equal(bill.summary!.count, 4);
  t.equal(bill.summary!.settlementFen, 1000 + 2000 + 4200, 'the summary adds up the rows as written');
  t.equal((await billOf(w, '20261128')).bill.rows.length, 1, 'a planted row makes a bill of an empty day');

  w.sim.dropFromBill('BOX1-P1');
  w.sim.amendBillRow('BOX1-P2', { settlementFen: 1999 });
  w.sim.amendBillRow('BOX1-P2', { refundStatus: 'REFUNDCLOSE' }, 'BOX1-P2-R');
  bill = (await billOf(w, '20261129')).bill;
  t.same(byNo(bill, 'BOX1-P1'), [], 'dropped');
  t.match(byNo(bill, 'BOX1-P2'), [
    { tradeState: 'SUCCESS', settlementFen: 1999, orderFen: 2000 },
    { tradeState: 'REFUND', refundFen: 700, refundStatus: 'REFUNDCLOSE' },
  ]);

  w.sim.amendBillRow('BOX1-P2', { at: DAY + 25 * HOUR });
  bill = (await billOf(w, '20261129')).bill;
  t.same(byNo(bill, 'BOX1-P2').map((row) => row.tradeState), ['REFUND'], 'the sale row moved to another day');

  w.sim.amendBillRow('BOX1-P2', { raw: { 退款金额: '7.00.0' } }, 'BOX1-P2-R');
  const broken = await w.client.downloadbill({ billDate: '20261129' });
  if (broken.kind !== 'bill') throw new Error('expected a bill');
  try {
    parseBill(broken.text);
    t.fail('expected a BillError');
  } catch (error) {
    t.ok(error instanceof BillError);
    t.match(error, { code: 'BAD_BILL', column: '退款金额' }, 'a cell the parser cannot read');
  }

  w.clock.set(DAY + 48 * HOUR + 9 * HOUR);
  t.match((await billOf(w, '20261130')).bill.rows, [{ outTradeNo: 'BOX1-P2', tradeState: 'SUCCESS', settlementFen: 1999, time: '2026-11-30 01:00:00' }]);

  w.sim.clearBillChanges();
  bill = (await billOf(w, '20261129')).bill;
  t.same(bill.rows.map((row) => `${row.outTradeNo} ${row.tradeState}`), ['BOX1-P1 SUCCESS', 'BOX1-P2 SUCCESS', 'BOX1-P2 REFUND']);
  t.throws(() => w.sim.plantBillRow({} as never), TypeError);
});

// ---------------------------------------------------------------- the wire, by hand

function post(sim: GatewaySimulator, body: string): Promise<{ status: number; text: string; type: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(new URL('/pay/downloadbill', sim.origin), { method: 'POST', agent: false, ca: sim.pki.ca.certPem }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8'), type: String(res.headers['content-type']) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

let nonceSeq = 0;
function request(fields: Record<string, string>, signType: SignType | null = 'MD5', key = M.apiKey): string {
  const f: Record<string, string> = { appid: M.appId, mch_id: M.mchId, nonce_str: `n${++nonceSeq}`, ...fields };
  if (signType === 'HMAC-SHA256') f.sign_type = signType;
  return encodeXml({ ...f, sign: sign(f, key, signType ?? 'MD5') });
}

t.test('the wire: failures are unsigned XML with the return_msg of the real API', async (t) => {
  const w = await world(t);
  await sale(w, DAY + 10 * HOUR, 'BOX1-W', 100);
  w.clock.set(NEXT_MORNING);
  const seen: string[] = [];
  w.sim.onRequest((call) => seen.push(call));
  const fails: Array<[string, string, string]> = [
    ['a wrong key', request({ bill_date: '20261129' }, 'MD5', 'x'.repeat(32)), 'sign error'],
    ['no bill_date', request({}), 'missing parameter'],
    ['another appid', request({ bill_date: '20261129', appid: 'wx0000000000000000' }), 'invalid appid'],
    ['another merchant', request({ bill_date: '20261129', mch_id: '1900000108' }), 'invalid parameter'],
    ['a bill_type that does not exist', request({ bill_date: '20261129', bill_type: 'REVOKED' }), 'invalid bill_type'],
    ['tar_type other than GZIP', request({ bill_date: '20261129', tar_type: 'ZIP' }), 'invalid tar_type, Only GZIP supported'],
    ['not a date', request({ bill_date: '20261131' }), 'invalid bill_date'],
    ['a long nonce', request({ bill_date: '20261129', nonce_str: 'n'.repeat(33) }), 'nonce_str too long'],
  ];
  for (const [name, body, msg] of fails) {
    const answer = await post(w.sim, body);
    t.equal(answer.status, 200, name);
    const fields = decodeXml(answer.text);
    t.same(fields, { return_code: 'FAIL', return_msg: msg }, name);
  }
  t.same(decodeXml((await post(w.sim, request({ bill_date: '20261128' }))).text), { return_code: 'FAIL', return_msg: 'No Bill Exist', error_code: '20002' });
  const ok = await post(w.sim, request({ bill_date: '20261129', bill_type: 'ALL' }, 'HMAC-SHA256'));
  t.match(ok.type, /text\/plain/);
  t.equal(parseBill(ok.text).rows[0]!.outTradeNo, 'BOX1-W', 'HMAC-SHA256 requests are served too');
  t.ok(seen.every((call) => call === 'downloadbill') && seen.length === fails.length + 2);
  t.ok(w.sim.requests().filter((r) => r.call === 'downloadbill').every((r) => r.status === 200 && r.outTradeNo === null));
});
