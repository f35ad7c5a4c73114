import t from 'tap';
import { dayReport, formatReport } from '../../src/books/report.js';
import { dayTotals } from '../../src/books/totals.js';
import { VirtualClock } from '../../src/clock.js';
import { sell } from '../helpers/faults.js';
import { createWorld } from '../helpers/world.js';

/**
 * The day's money from the real journal after real sales and refunds through the engines and HTTPS to the
 * simulator. The virtual clock starts at 2026-11-29 08:00 UTC = 16:00 China time.
 */

t.test('a day: paid, refunded, net, failures by code, reversed, by hour, still open; the next day is empty', async (t) => {
  const clock = new VirtualClock(Date.UTC(2026, 10, 29, 8, 0, 0));
  const w = await createWorld({ clock });
  t.teardown(() => w.close());
  await sell(w, null, { ref: 'D1', amount: 1000 });
  await sell(w, null, { ref: 'D2', amount: 2550 });
  await sell(w, { outcome: 'NOTENOUGH' }, { ref: 'D3', amount: 700 });
  await sell(w, { outcome: 'NOTENOUGH' }, { ref: 'D4', amount: 300 });
  await sell(w, { outcome: 'userpaying' }, { ref: 'D5', amount: 400 });
  clock.set(Date.UTC(2026, 10, 29, 11, 30, 0)); // 19:30 in Shanghai
  await sell(w, null, { ref: 'D6', amount: 99 });
  const refund = w.refunds.request({ rid: 'DR1', ref: 'D2', amountFen: 550, source: 'register' });
  if (refund.kind !== 'created') throw new Error(refund.kind);
  await w.refunds.drive(refund.refund.id);
  const pending = w.refunds.request({ rid: 'DR2', ref: 'D1', amountFen: 100, source: 'technician' });
  t.equal(pending.kind, 'created', 'recorded, not sent: still open');

  const report = dayReport(w.journal, '20261129', 'Asia/Shanghai');
  t.same(report.paid, { count: 3, fen: 1000 + 2550 + 99 });
  t.same(report.refunded, { count: 1, fen: 550 });
  t.equal(report.netFen, 1000 + 2550 + 99 - 550);
  t.same(report.failures, [
    { code: 'NOTENOUGH', count: 2, fen: 1000 },
    { code: 'TIMEOUT_REVERSED', count: 1, fen: 400 },
  ]);
  t.same(report.reversed, { count: 1, fen: 400 });
  t.same(
    report.hours.map((h) => [h.hour, h.paid.count, h.paid.fen, h.refunded.count, h.refunded.fen]),
    [
      [16, 2, 3550, 0, 0],
      [19, 1, 99, 1, 550],
    ],
  );
  t.same(report.open.reversals, []);
  t.match(report.open.refunds, [{ rid: 'DR2', ref: 'D1', fen: 100, state: 'requested' }]);
  const text = formatReport(report).join('\n');
  t.match(text, /business day 2026-11-29 \(Asia\/Shanghai\)/);
  t.match(text, /net +30\.99 yuan/);
  t.match(text, /NOTENOUGH +2 +10\.00 yuan/);
  t.match(text, /refund DR2 \(ref D1\) 1\.00 yuan requested/);
  t.same(dayTotals(w.journal, '20261129', 'Asia/Shanghai'), { day: '20261129', paidCount: 3, paidFen: 3649, refundedCount: 1, refundedFen: 550, netFen: 3099 });

  const next = dayReport(w.journal, '20261130', 'Asia/Shanghai');
  t.same([next.paid, next.refunded, next.netFen, next.failures, next.hours], [{ count: 0, fen: 0 }, { count: 0, fen: 0 }, 0, [], []]);
  // The same instants on another wall clock: 08:00 UTC is still the 29th in Berlin, at 09:00.
  t.same(dayReport(w.journal, '20261129', 'Europe/Berlin').hours.map((h) => h.hour), [9, 12]);
});

t.test('a reversal WeChat Pay refused for good (REVERSE_EXPIRE) is money kept that needs the merchant platform, never "nothing kept"', async (t) => {
  const clock = new VirtualClock(Date.UTC(2026, 10, 29, 8, 0, 0));
  const w = await createWorld({ clock });
  t.teardown(() => w.close());
  const sold = (await sell(w, null, { ref: 'K1', amount: 1880 })).sale;
  await sell(w, { outcome: 'NOTENOUGH' }, { ref: 'K2', amount: 500 });
  // Eight days later a technician tries to reverse it: past WeChat Pay's 7 days.
  clock.set(Date.UTC(2026, 11, 7, 8, 0, 0));
  const tried = await w.engine.manualReverse(sold.outTradeNo);
  t.equal(tried.ok, false);
  t.match(tried.sale, { state: 'reverse_failed', finalText: /REVERSE_EXPIRE/ });

  const report = dayReport(w.journal, '20261129', 'Asia/Shanghai');
  t.same(report.failures, [{ code: 'NOTENOUGH', count: 1, fen: 500 }], 'only the sale that took nothing');
  t.match(report.kept, { count: 1, fen: 1880, sales: [{ outTradeNo: sold.outTradeNo, ref: 'K1', fen: 1880, code: 'REVERSE_EXPIRE' }] });
  t.match(report.open.refusedReversals, [{ outTradeNo: sold.outTradeNo, fen: 1880, code: 'REVERSE_EXPIRE' }]);
  const text = formatReport(report).join('\n');
  t.match(text, /kept by WeChat Pay, reversal refused: 1 order\(s\) 18\.80 yuan: the box cannot give it back; refund each in the merchant platform/);
  t.match(text, new RegExp(`refused reversal ${sold.outTradeNo} \\(ref K1\\) 18\\.80 yuan \\[REVERSE_EXPIRE\\]: money kept, refund it in the merchant platform`));
  const from = text.indexOf('failed sales by code (nothing kept):');
  const nothingKept = text.slice(from, text.indexOf('\n\n', from));
  t.notMatch(nothingKept, /REVERSE_EXPIRE|18\.80/, 'not among the failures that kept nothing');
  // Whatever day is asked, the refused reversal stays open until it is settled.
  t.equal(dayReport(w.journal, '20261207', 'Asia/Shanghai').open.refusedReversals.length, 1);
});
