import t, { type Test } from 'tap';
import { reconcile, formatReconciliation, type BillEntry } from '../../src/books/reconcile.js';
import { VirtualClock } from '../../src/clock.js';
import type { Sale } from '../../src/journal/journal.js';
import { sell } from '../helpers/faults.js';
import { DEVICE_ID, createWorld, type World } from '../helpers/world.js';

/**
 * The matching rules on a real journal (real sales and refunds through the engines, HTTPS and the simulator)
 * against bills written by hand: a clean day matches everything; each planted difference is found once,
 * with its kind. The simulator's own bill is reconciled end to end in test/e2e/reconcile.test.ts.
 */

const DAY = '20261129';
const row = (sale: Pick<Sale, 'outTradeNo' | 'amountFen' | 'ref' | 'transactionId'>, extra: Partial<BillEntry> = {}): BillEntry => ({
  deviceInfo: DEVICE_ID,
  outTradeNo: sale.outTradeNo,
  transactionId: sale.transactionId ?? '',
  tradeState: 'SUCCESS',
  attach: sale.ref,
  orderFen: sale.amountFen,
  outRefundNo: '',
  refundFen: 0,
  ...extra,
});

async function day(t: Test): Promise<{ w: World; paid: Sale[]; failed: Sale; refund: { outRefundNo: string; outTradeNo: string; amountFen: number; ref: string } }> {
  const w = await createWorld({ clock: new VirtualClock(Date.UTC(2026, 10, 29, 8, 0, 0)) });
  t.teardown(() => w.close());
  const paid = [(await sell(w, null, { ref: 'C1', amount: 1000 })).sale, (await sell(w, null, { ref: 'C2', amount: 2000 })).sale];
  const failed = (await sell(w, { outcome: 'userpaying' }, { ref: 'C3', amount: 300 })).sale;
  const created = w.refunds.request({ rid: 'CR1', ref: 'C2', amountFen: 500, source: 'register' });
  if (created.kind !== 'created') throw new Error(created.kind);
  const refund = await w.refunds.drive(created.refund.id);
  return { w, paid, failed, refund };
}

function clean(paid: Sale[], refund: { outRefundNo: string; outTradeNo: string; amountFen: number; ref: string }): BillEntry[] {
  return [
    ...paid.map((s) => row(s)),
    { ...row({ outTradeNo: refund.outTradeNo, amountFen: 2000, ref: refund.ref, transactionId: '' }), tradeState: 'REFUND', outRefundNo: refund.outRefundNo, refundFen: refund.amountFen },
    // Another box of the same merchant: not looked at.
    row({ outTradeNo: 'OTHERBOXAB1200000001', amountFen: 5000, ref: 'X', transactionId: '1' }, { deviceInfo: 'OTHERBOX' }),
  ];
}

t.test('a clean day: every row matched, nothing found, the other box left alone', async (t) => {
  const { w, paid, refund } = await day(t);
  const result = reconcile({ date: DAY, deviceId: DEVICE_ID, entries: clean(paid, refund), journal: w.journal });
  t.same(result.discrepancies, []);
  t.equal(result.matched, 3);
  t.same(result.rows, { mine: 3, others: 1 });
  t.match(formatReconciliation(result).join('\n'), /matched: 3\n {2}discrepancies: 0/);
});

t.test('each kind, planted once, found once with what to do', async (t) => {
  const { w, paid, failed, refund } = await day(t);
  const entries = clean(paid, refund);
  // A charge WeChat Pay kept for the order the box reversed (a reversal it did not honour).
  entries.push(row(failed));
  // A paid sale missing from the bill.
  entries.splice(0, 1);
  // An amount that differs.
  entries[0] = { ...entries[0]!, orderFen: 1999 };
  // A sale of this device the journal does not have (by device_info), and one found by its out_trade_no alone.
  entries.push(row({ outTradeNo: `${DEVICE_ID}ZZZZ00009999`, amountFen: 777, ref: 'LOST', transactionId: '9' }));
  entries.push(row({ outTradeNo: `${DEVICE_ID}ZZZZ00009998`, amountFen: 778, ref: 'LOST2', transactionId: '8' }, { deviceInfo: '' }));
  // A refund the journal lacks.
  entries.push({ ...row(paid[0]!), tradeState: 'REFUND', outRefundNo: `${DEVICE_ID}ZZZZR00000077`, refundFen: 100 });

  const result = reconcile({ date: DAY, deviceId: DEVICE_ID, entries, journal: w.journal });
  const kinds = result.discrepancies.map((d) => [d.kind, d.out_trade_no]);
  t.same(kinds.sort(), [
    ['AMOUNT_MISMATCH', paid[1]!.outTradeNo],
    ['CHARGED_NOT_REPORTED', failed.outTradeNo],
    ['PAID_NOT_IN_BILL', paid[0]!.outTradeNo],
    ['REFUND_MISMATCH', paid[0]!.outTradeNo],
    ['UNKNOWN_ORDER', `${DEVICE_ID}ZZZZ00009998`],
    ['UNKNOWN_ORDER', `${DEVICE_ID}ZZZZ00009999`],
  ].sort());
  const charged = result.discrepancies.find((d) => d.kind === 'CHARGED_NOT_REPORTED')!;
  t.match(charged, { ref: 'C3', bill_fen: 300, journal_fen: 300, state: 'reversed' });
  t.match(charged.to_do, /refund it in the merchant platform/);
  t.match(result.discrepancies.find((d) => d.kind === 'UNKNOWN_ORDER' && d.ref === 'LOST'), { bill_fen: 777, journal_fen: null });
  t.match(result.discrepancies.find((d) => d.kind === 'AMOUNT_MISMATCH'), { bill_fen: 1999, journal_fen: 2000, ref: 'C2' });
  t.equal(result.matched, 1, 'only the refund row still agrees');
});

t.test('a refund WeChat Pay accepted that the bill lacks, and a REVOKED row for a sale told PAID', async (t) => {
  const { w, paid, refund } = await day(t);
  const entries = clean(paid, refund).filter((e) => e.tradeState !== 'REFUND');
  entries[0] = { ...entries[0]!, tradeState: 'REVOKED' };
  const result = reconcile({ date: DAY, deviceId: DEVICE_ID, entries, journal: w.journal });
  t.same(
    result.discrepancies.map((d) => [d.kind, d.out_trade_no, d.out_refund_no ?? null]).sort(),
    [
      ['PAID_NOT_IN_BILL', paid[0]!.outTradeNo, null],
      ['REFUND_MISMATCH', refund.outTradeNo, refund.outRefundNo],
    ].sort(),
  );
});

t.test('a day without trades (No Bill Exist) against a journal with a paid sale: PAID_NOT_IN_BILL', async (t) => {
  const { w, paid } = await day(t);
  const result = reconcile({ date: DAY, deviceId: DEVICE_ID, entries: [], journal: w.journal });
  t.equal(result.discrepancies.filter((d) => d.kind === 'PAID_NOT_IN_BILL').length, paid.length);
  const empty = reconcile({ date: '20261128', deviceId: DEVICE_ID, entries: [], journal: w.journal });
  t.same([empty.matched, empty.discrepancies], [0, []], 'the day before: nothing either side');
});
