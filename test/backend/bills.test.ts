import { createHash } from 'node:crypto';
import t from 'tap';
import { BillCache, cutBillFor } from '../../src/backend/bills.js';
import { entriesOfBill } from '../../src/books/reconcile.js';
import { memoryLogger } from '../../src/log.js';
import { parseBill } from '../../src/wechatpay/bill.js';
import type { BillOutcome } from '../../src/wechatpay/client.js';
import { createBackendWorld, freshCode, type BackendWorld, type Box } from './helpers.js';

/**
 * A box's bill is its own (contract §8): the backend cuts the merchant's bill to the asking box's trades, keeps
 * the format whole, and fetches a day's bill once for every box. Proven with a box's certificate used directly
 * against the backend, and the simulator's record of what reached WeChat Pay.
 */

async function paySale(box: Box, ref: string, amountFen: number, code = freshCode()) {
  const started = box.engine.startSale(ref, amountFen);
  if (started.kind !== 'open') throw new Error(`sale not opened: ${started.kind}`);
  return box.engine.pay(started.sale.id, code);
}

/** The payer's openid as the simulator derives it from the payment code. */
function openIdOf(code: string): string {
  return 'o' + createHash('sha256').update(code).digest('base64url').slice(0, 27);
}

const DAY = '20261129';
/** The virtual clock starts 2026-11-29 16:00 China time; that day's bill is out from 09:00 the next day. */
const TO_NEXT_MORNING = 18 * 3_600_000;

let world: BackendWorld;
t.beforeEach(async () => {
  world = await createBackendWorld();
});
t.afterEach(async () => {
  await world.close();
});

t.test("attacker: a box's bill holds only its trades, never another box's or payer's; the summary is its own", async (t) => {
  const a = await world.box('SHOPA');
  const b = await world.box('SHOPB');
  const a1 = await paySale(a, 'R1', 1200);
  const a2 = await paySale(a, 'R2', 300);
  const bCode = freshCode();
  const b1 = await paySale(b, 'R1', 4500, bCode);
  const refund = a.refunds.request({ ref: 'R1', amountFen: 200, rid: 'T1', source: 'technician' });
  if (refund.kind !== 'created') throw new Error('no refund');
  t.equal((await a.refunds.drive(refund.refund.id)).state, 'accepted');
  world.clock.advance(TO_NEXT_MORNING);

  const attacker = world.gatewayFor(a.certificate);
  const outcome = await attacker.downloadbill({ billDate: DAY });
  t.equal(outcome.kind, 'bill');
  if (outcome.kind !== 'bill') return;
  const bill = parseBill(outcome.text);
  t.same(bill.rows.map((r) => r.outTradeNo).sort(), [a1.outTradeNo, a1.outTradeNo, a2.outTradeNo].sort(), 'its two sales and its refund');
  t.notOk(outcome.text.includes(b1.outTradeNo), "the other box's order is not in it");
  t.ok(world.sim.ledger().length >= 3);
  t.ok(bill.rows.every((r) => r.openId !== openIdOf(bCode)), "nor the other box's payer");
  t.notOk(outcome.text.includes(openIdOf(bCode)), "the other payer's openid is nowhere in the text");
  t.same(bill.summary && { count: bill.summary.count, settlement: bill.summary.settlementFen, refund: bill.summary.refundFen }, { count: 3, settlement: 1500, refund: 200 }, 'summary recomputed');
  t.equal(bill.header.length, 27, 'the header whole');
  // The box's reconcile reads it as it reads WeChat Pay's.
  const read = entriesOfBill(outcome.text);
  t.equal(read.rows, 3);

  const theirs = await b.gateway.downloadbill({ billDate: DAY });
  t.equal(theirs.kind, 'bill');
  if (theirs.kind === 'bill') t.same(parseBill(theirs.text).rows.map((r) => r.outTradeNo), [b1.outTradeNo]);

  // A box with no trade that day: no bill, not the merchant's.
  const c = await world.box('SHOPC');
  const none = await c.gateway.downloadbill({ billDate: DAY });
  t.equal(none.kind, 'no_bill');
  t.equal(world.sim.requests().filter((r) => r.call === 'downloadbill').length, 1, 'one download served every box');
});

t.test('one fetch of a day serves every box: 30 asks at once and again, one download upstream', async (t) => {
  const boxes = [await world.box('SHOPA'), await world.box('SHOPB'), await world.box('SHOPC')];
  for (const [i, box] of boxes.entries()) await paySale(box, `R${i}`, 100 + i);
  world.clock.advance(TO_NEXT_MORNING);
  const asks: Promise<BillOutcome>[] = [];
  for (let i = 0; i < 30; i++) asks.push(boxes[i % 3]!.gateway.downloadbill({ billDate: DAY }));
  const outcomes = await Promise.all(asks);
  t.ok(outcomes.every((o) => o.kind === 'bill'), 'every box got its bill');
  t.ok(outcomes.every((o, i) => o.kind === 'bill' && parseBill(o.text).rows.length === 1 && o.text.includes(boxes[i % 3]!.deviceId)));
  for (let i = 0; i < 10; i++) await boxes[0]!.gateway.downloadbill({ billDate: DAY });
  t.equal(world.sim.requests().filter((r) => r.call === 'downloadbill').length, 1, 'one download upstream');
  t.equal(world.server.bills.fetches, 1);
});

t.test('a bill not ready is asked for again at most once a minute; a download nobody waits for is abandoned', async (t) => {
  let now = 1_000_000;
  const started: Array<{ signal?: AbortSignal; resolve: (o: BillOutcome) => void }> = [];
  const client = {
    downloadbill(req: { signal?: AbortSignal }): Promise<BillOutcome> {
      return new Promise((resolve) => {
        const entry = { resolve, ...(req.signal ? { signal: req.signal } : {}) };
        started.push(entry);
        req.signal?.addEventListener('abort', () => resolve({ kind: 'unknown', call: 'downloadbill', failure: 'TIMEOUT', message: 'aborted', ms: 0, origin: null }));
      });
    },
  };
  const cache = new BillCache({ client, log: memoryLogger('debug'), now: () => now });
  const keepAll = (): boolean => true;

  const first = cache.bill({ billDate: DAY }, keepAll);
  const second = cache.bill({ billDate: DAY }, keepAll);
  t.equal(started.length, 1, 'one flight');
  started[0]!.resolve({ kind: 'not_ready', call: 'downloadbill', message: 'Bill Creating', ms: 5, origin: 'x' });
  t.equal((await first).kind, 'not_ready');
  t.equal((await second).kind, 'not_ready');
  now += 59_000;
  t.equal((await cache.bill({ billDate: DAY }, keepAll)).kind, 'not_ready', 'from the cache');
  t.equal(started.length, 1, 'not fetched again within the minute');
  now += 2_000;

  const gone = new AbortController();
  const waiting = cache.bill({ billDate: DAY }, keepAll, gone.signal);
  t.equal(started.length, 2, 'fetched again after a minute');
  gone.abort();
  t.equal((await waiting).kind, 'unknown');
  t.equal(started[1]!.signal?.aborted, true, 'the download is aborted when nobody waits');
  await new Promise((resolve) => setImmediate(resolve));
  void cache.bill({ billDate: DAY }, keepAll);
  t.equal(started.length, 3, 'the next box starts a new download');
});

t.test('cutBillFor keeps the header, the kept rows as written and a recomputed summary', async (t) => {
  const header = '交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注';
  const row = (no: string, state: string, fen: string, refund: string, fee: string): string =>
    ['2026-11-29 10:00:00', 'wx1', '1900000109', '0', 'D', '4200000000000000000000000001', no, 'oUser', 'MICROPAY', state, 'OTHERS', 'CNY', fen, '0.00', state === 'REFUND' ? '5000' : '0', state === 'REFUND' ? `${no}R` : '0', refund, '0.00', '', '', 'x, with a comma', '', fee, '0.60%', fen, refund, '']
      .map((v) => '`' + v)
      .join(',');
  const text =
    '\ufeff' +
    [
      header,
      row('AAA1', 'SUCCESS', '10.00', '0.00', '0.06000'),
      row('BBB1', 'SUCCESS', '99.00', '0.00', '0.59000'),
      row('AAA1', 'REFUND', '0.00', '4.00', '-0.02000'),
      '总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额',
      '`3,`109.00,`4.00,`0.00,`0.63000,`109.00,`4.00',
    ].join('\r\n') +
    '\r\n';
  const cut = cutBillFor(text, (r) => r.outTradeNo.startsWith('AAA'));
  t.ok(cut);
  const bill = parseBill(cut!);
  t.same(bill.rows.map((r) => [r.outTradeNo, r.tradeState, r.body]), [['AAA1', 'SUCCESS', 'x, with a comma'], ['AAA1', 'REFUND', 'x, with a comma']]);
  t.match(bill.summary, { count: 2, settlementFen: 1000, refundFen: 400, feeFen: 4, orderFen: 1000, requestedRefundFen: 400 });
  t.ok(cut!.startsWith('\ufeff' + header + '\r\n'));
  t.notOk(cut!.includes('BBB1'));
  t.equal(cutBillFor(text, () => false), null);
});

t.test('no box turns its calls into the merchant\'s bills: a budget of downloads per box, the least recently asked bill evicted', async (t) => {
  let now = 5_000_000;
  let downloads = 0;
  const client = {
    downloadbill(): Promise<BillOutcome> {
      downloads++;
      return Promise.resolve({ kind: 'no_bill', call: 'downloadbill', message: 'No Bill Exist', ms: 1, origin: 'x' } as BillOutcome);
    },
  };
  const cache = new BillCache({ client, log: memoryLogger('debug'), now: () => now, maxBills: 3, perBoxPerMinute: 4, retryMs: 3_600_000 });
  const all = (): boolean => true;
  const days = ['20261101', '20261102', '20261103', '20261104', '20261105'];
  const outcomes = [];
  for (const day of days) outcomes.push(await cache.bill({ billDate: day }, all, undefined, 'THIEF'));
  t.same(outcomes.map((o) => o.kind), ['no_bill', 'no_bill', 'no_bill', 'no_bill', 'unknown'], 'the fifth new day in a minute: try again later');
  t.match(outcomes[4]!.kind === 'unknown' && outcomes[4]!.message, /try again in a minute/);
  t.equal(downloads, 4);
  // Another box is not held up: the thief's days are kept at most 3 (the oldest went), yesterday still comes.
  t.equal((await cache.bill({ billDate: '20261128' }, all, undefined, 'SHOP1')).kind, 'no_bill');
  t.equal(downloads, 5);
  t.equal((await cache.bill({ billDate: '20261128' }, all, undefined, 'THIEF')).kind, 'no_bill', 'a kept day is free, even past the budget');
  t.equal(downloads, 5);
  now += 60_000;
  t.equal((await cache.bill({ billDate: days[4]! }, all, undefined, 'THIEF')).kind, 'no_bill', 'a minute later the budget is back');
  t.equal(downloads, 6);
});
