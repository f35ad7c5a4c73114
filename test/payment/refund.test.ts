import t, { type Test } from 'tap';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { VirtualClock } from '../../src/clock.js';
import { Journal } from '../../src/journal/journal.js';
import { MIGRATIONS, SCHEMA_VERSION } from '../../src/journal/migrations.js';
import type { Refund } from '../../src/journal/refunds.js';
import { refundLine } from '../../src/payment/refund.js';
import type { RefundScenario } from '../../src/simulator/scenarios.js';
import { GatewaySimulator } from '../../src/simulator/gateway.js';
import { rewritingProxy, sell } from '../helpers/faults.js';
import { DEVICE_ID, MERCHANT, createWorld, tempDir, type World, type WorldOptions } from '../helpers/world.js';

/**
 * The refund cycle through the real engine, the real journal file and real HTTPS (with the merchant
 * certificate) against the simulator, on virtual time. Every test asserts the journal row, the register line
 * and the simulator's ledger of refunds.
 */

async function world(t: Test, options: WorldOptions = {}): Promise<World> {
  const w = await createWorld({ clock: new VirtualClock(), ...options });
  t.teardown(() => w.close());
  return w;
}

/** A PAID sale of `amount` fen under `ref`, with the refund scenario of its order set. */
async function paidSale(w: World, ref: string, amount: number, scenario?: RefundScenario) {
  const { sale } = await sell(w, null, { ref, amount });
  if (sale.state !== 'paid') throw new Error(`sale not paid: ${sale.state}`);
  if (scenario) w.sim.setRefundScenario(sale.outTradeNo, scenario);
  return sale;
}

function created(w: World, rid: string, ref: string, amountFen: number): Refund {
  const result = w.refunds.request({ rid, ref, amountFen, source: 'register' });
  if (result.kind !== 'created') throw new Error(`refund not created: ${result.kind}`);
  return result.refund;
}

/** Lets virtual time pass in steps while the background queue works. */
async function passTime(w: World, ms: number, stepMs = 5000): Promise<void> {
  for (let spent = 0; spent < ms; spent += stepMs) {
    (w.clock as VirtualClock).advance(stepMs);
    await w.refunds.runDue();
  }
}

t.test('accepted, then SUCCESS after 20 minutes: REFUNDED at once, followed until it reached the payer', async (t) => {
  const w = await world(t);
  const sale = await paidSale(w, 'R-OK', 5000, { outcome: 'SUCCESS', settleAfterMs: 20 * 60_000 });
  const refund = created(w, 'RID-OK', 'R-OK', 1200);
  t.equal(refund.state, 'requested', 'committed before anything is sent');
  t.equal(w.sim.refunds().length, 0, 'nothing at WeChat Pay yet');
  t.match(refund.outRefundNo, new RegExp(`^${DEVICE_ID}${w.journal.tag}R\\d{8}$`), 'out_refund_no: device id, journal tag, sequence');

  const accepted = await w.refunds.drive(refund.id);
  t.equal(accepted.state, 'accepted');
  t.equal(refundLine(accepted), `REFUNDED RID-OK R-OK 1200 ${refund.outRefundNo}`);
  t.ok(accepted.refundId, 'WeChat Pay refund_id kept');

  await passTime(w, 10 * 60_000);
  t.equal(w.journal.refunds.get(refund.id)!.state, 'accepted', 'still on its way after 10 minutes');
  await passTime(w, 30 * 60_000);
  const done = w.journal.refunds.get(refund.id)!;
  t.equal(done.state, 'succeeded', 'followed with refundquery until SUCCESS');
  t.equal(refundLine(done), `REFUNDED RID-OK R-OK 1200 ${refund.outRefundNo}`, 'the register line does not change');

  const ledger = w.sim.refunds();
  t.equal(ledger.length, 1);
  t.match(ledger[0], { outRefundNo: refund.outRefundNo, outTradeNo: sale.outTradeNo, refundFee: 1200, totalFee: 5000, status: 'SUCCESS', requestCount: 1 });
  t.equal(w.sim.ledger().find((e) => e.outTradeNo === sale.outTradeNo)!.refundedFen, 1200);
});

t.test('PROCESSING for long: followed with growing intervals, never settled by the box on its own', async (t) => {
  const w = await world(t);
  await paidSale(w, 'R-LONG', 3000, { outcome: 'PROCESSING' });
  const refund = created(w, 'RID-LONG', 'R-LONG', 3000);
  t.equal((await w.refunds.drive(refund.id)).state, 'accepted');
  await passTime(w, 6 * 3600_000, 60_000);
  const after = w.journal.refunds.get(refund.id)!;
  t.equal(after.state, 'accepted', 'still accepted after 6 hours');
  t.ok(after.nextAttemptAt! - (w.clock.now()) <= 3600_000, 'asked again within the hour');
  const queries = w.sim.refunds()[0]!.queryCount;
  t.ok(queries >= 6 && queries <= 20, `queried ${queries} times in 6 hours, backing off`);
});

t.test('REFUNDCLOSE: logged at error level, nothing refunded, the amount may be refunded again', async (t) => {
  const w = await world(t);
  const sale = await paidSale(w, 'R-CLOSE', 2000, { outcome: 'REFUNDCLOSE' });
  const refund = created(w, 'RID-CLOSE', 'R-CLOSE', 2000);
  await w.refunds.drive(refund.id);
  await passTime(w, 60_000);
  const closed = w.journal.refunds.get(refund.id)!;
  t.equal(closed.state, 'closed');
  t.equal(closed.finalCode, 'REFUNDCLOSE');
  t.ok(w.log.lines.some((l) => l.startsWith('<3>WeChat Pay closed the refund')), 'error level');
  t.equal(w.sim.ledger().find((e) => e.outTradeNo === sale.outTradeNo)!.refundedFen, 0, 'nothing refunded at WeChat Pay');
  w.sim.setRefundScenario(sale.outTradeNo, { outcome: 'SUCCESS' });
  const again = created(w, 'RID-CLOSE-2', 'R-CLOSE', 2000);
  t.equal((await w.refunds.drive(again.id)).state, 'accepted', 'a closed refund does not hold the balance');
});

t.test('CHANGE: the payer could not be reached; logged at error level and kept for the merchant platform', async (t) => {
  const w = await world(t);
  await paidSale(w, 'R-CHG', 2000, { outcome: 'CHANGE' });
  const refund = created(w, 'RID-CHG', 'R-CHG', 500);
  await w.refunds.drive(refund.id);
  await passTime(w, 60_000);
  const after = w.journal.refunds.get(refund.id)!;
  t.equal(after.state, 'change');
  t.ok(w.log.lines.some((l) => l.startsWith('<3>the refund could not reach the payer')));
  t.same(w.journal.refunds.needingAttention(10).map((r) => r.rid), ['RID-CHG'], 'status lists it');
  const over = w.refunds.request({ rid: 'RID-CHG-2', ref: 'R-CHG', amountFen: 1600, source: 'register' });
  t.match(over, { kind: 'over_amount', leftFen: 1500 }, 'money in limbo still counts against the sale');
});

for (const [name, fault] of [
  ['SYSTEMERROR although accepted', { kind: 'system_error' }],
  ['the connection dropped after accepting', { kind: 'drop_after' }],
] as const) {
  t.test(`${name}: refundquery finds it accepted; one refund at WeChat Pay, one out_refund_no`, async (t) => {
    const w = await world(t);
    await paidSale(w, `R-${fault.kind}`, 4000, { outcome: 'SUCCESS', settleAfterMs: 600_000, faults: { refund: [fault] } });
    const refund = created(w, `RID-${fault.kind}`, `R-${fault.kind}`, 4000);
    const after = await w.refunds.drive(refund.id);
    t.equal(after.state, 'accepted', 'settled by refundquery, not by a new number');
    const ledger = w.sim.refunds();
    t.equal(ledger.length, 1);
    t.equal(ledger[0]!.outRefundNo, refund.outRefundNo);
    t.equal(ledger[0]!.requestCount, 1, 'not sent twice');
    t.same(
      w.journal.refunds.events(refund.id).map((e) => e.kind),
      ['created', 'refund_sent', 'refund_answer', 'refundquery_answer'],
    );
  });
}

t.test('NOTENOUGH (the merchant balance): FAILED with a text about the merchant, nothing refunded', async (t) => {
  const w = await world(t);
  await paidSale(w, 'R-NE', 1000, { outcome: 'NOTENOUGH' });
  const refund = created(w, 'RID-NE', 'R-NE', 1000);
  const after = await w.refunds.drive(refund.id);
  t.equal(after.state, 'failed');
  t.match(refundLine(after), /^FAILED RID-NE NOTENOUGH Merchant balance/);
  t.equal(w.sim.refunds().length, 0);
});

t.test('TRADE_OVERDUE: a sale older than a year is refused for good', async (t) => {
  const w = await world(t);
  await paidSale(w, 'R-OLD', 1000);
  (w.clock as VirtualClock).advance(366 * 24 * 3600_000);
  const refund = created(w, 'RID-OLD', 'R-OLD', 1000);
  const after = await w.refunds.drive(refund.id);
  t.equal(after.state, 'failed');
  t.equal(after.finalCode, 'TRADE_OVERDUE');
  t.equal(w.sim.refunds().length, 0);
});

t.test('FREQUENCY_LIMITED: sent again a minute later with the same number', async (t) => {
  const w = await world(t);
  await paidSale(w, 'R-FREQ', 1000, { outcome: 'SUCCESS', settleAfterMs: 600_000, refuseFirst: { code: 'FREQUENCY_LIMITED', times: 1 } });
  const refund = created(w, 'RID-FREQ', 'R-FREQ', 1000);
  const first = await w.refunds.drive(refund.id);
  t.equal(first.state, 'submitted');
  t.equal(w.sim.refunds().length, 0);
  t.ok(first.nextAttemptAt! >= w.clock.now() + 59_000, 'not before a minute');
  t.equal(w.refunds.markPending(refund.id).finalCode, 'REFUND_PENDING');
  t.match(refundLine(w.journal.refunds.get(refund.id)!), /^FAILED RID-FREQ REFUND_PENDING /);
  await passTime(w, 30_000);
  t.equal(w.sim.refunds().length, 0, 'nothing sent before the minute is up');
  await passTime(w, 40_000);
  const after = w.journal.refunds.get(refund.id)!;
  t.equal(after.state, 'accepted');
  t.equal(after.finalCode, null, 'the pending mark is gone once accepted');
  t.equal(refundLine(after), `REFUNDED RID-FREQ R-FREQ 1000 ${refund.outRefundNo}`);
  t.equal(w.sim.refunds()[0]!.outRefundNo, refund.outRefundNo, 'the same number');
});

t.test('a restart with a refund in flight: recovery asks first, then sends again with the same number', async (t) => {
  const w = await world(t);
  await paidSale(w, 'R-CRASH', 2500, { outcome: 'SUCCESS', faults: { refund: [{ kind: 'hang' }] } });
  const refund = created(w, 'RID-CRASH', 'R-CRASH', 2500);
  // Sent, and the box "dies" before any answer: the row is submitted.
  w.journal.refunds.transition(refund.id, 'submitted', {}, { kind: 'refund_sent', detail: '{}' });
  await w.restart();
  w.sim.setRefundScenario(refund.outTradeNo, { outcome: 'SUCCESS' });
  const recovered = await w.refunds.recover();
  t.same(recovered.map((r) => [r.rid, r.state]), [['RID-CRASH', 'accepted']]);
  t.equal(w.sim.refunds().length, 1);
  t.equal(w.sim.refunds()[0]!.outRefundNo, refund.outRefundNo);
});

t.test('locally decided: NOT_PAID, OVER_AMOUNT, RID reuse, RID idempotency, the register day cap', async (t) => {
  const w = await world(t);
  await paidSale(w, 'R-LOC', 1000);
  t.same(w.refunds.request({ rid: 'X1', ref: 'NOSUCH', amountFen: 100, source: 'register' }), { kind: 'not_paid' });
  t.match(w.refunds.request({ rid: 'X2', ref: 'R-LOC', amountFen: 1001, source: 'register' }), { kind: 'over_amount', leftFen: 1000 });
  const first = created(w, 'X3', 'R-LOC', 600);
  t.match(w.refunds.request({ rid: 'X3', ref: 'R-LOC', amountFen: 600, source: 'register' }), { kind: 'existing', refund: { id: first.id } });
  t.match(w.refunds.request({ rid: 'X3', ref: 'R-LOC', amountFen: 500, source: 'register' }), { kind: 'rid_reused' });
  t.match(w.refunds.request({ rid: 'X4', ref: 'R-LOC', amountFen: 401, source: 'technician' }), { kind: 'over_amount', leftFen: 400 });
  const day = { maxFen: 700, startMs: w.clock.now() - 1000, endMs: w.clock.now() + 1000 };
  t.match(w.refunds.request({ rid: 'X5', ref: 'R-LOC', amountFen: 200, source: 'register', dayCap: day }), { kind: 'limit', usedFen: 600, maxFen: 700 });
  t.match(w.refunds.request({ rid: 'X6', ref: 'R-LOC', amountFen: 100, source: 'register', dayCap: day }), { kind: 'created' });
  t.equal(w.sim.requests().filter((r) => r.call === 'refund').length, 0, 'none of this asked WeChat Pay');
});

t.test('a REF whose paid attempt came after failed ones: the refund goes to the paid attempt', async (t) => {
  const w = await world(t);
  await sell(w, { outcome: 'NOTENOUGH' }, { ref: 'R-RETRY', amount: 800 });
  const paid = await paidSale(w, 'R-RETRY', 800);
  const refund = created(w, 'RID-RETRY', 'R-RETRY', 800);
  t.equal(refund.saleId, paid.id);
  t.equal(refund.outTradeNo, paid.outTradeNo);
});

t.test('the register and a technician at once, from two processes: never more than the sale', async (t) => {
  const w = await world(t);
  const sale = await paidSale(w, 'R-RACE', 1000);
  const other = Journal.open(w.dbPath, { deviceId: DEVICE_ID, clock: w.clock });
  t.teardown(() => other.close());
  const kinds: string[] = [];
  for (let i = 0; i < 6; i++) {
    const journal = i % 2 === 0 ? w.journal : other;
    kinds.push(journal.refunds.create({ rid: `RACE${i}`, ref: 'R-RACE', amountFen: 300, source: i % 2 === 0 ? 'register' : 'technician' }).kind);
  }
  t.same(kinds, ['created', 'created', 'created', 'over_amount', 'over_amount', 'over_amount']);
  const held = w.journal.refunds.ofSale(sale.id).reduce((sum, r) => sum + r.amountFen, 0);
  t.equal(held, 900);
});

t.test('WeChat Pay refuses the 51st refund of an order: FAILED, and the 50 before stand', async (t) => {
  const w = await world(t);
  await paidSale(w, 'R-MANY', 100);
  for (let i = 0; i < 50; i++) t.equal((await w.refunds.drive(created(w, `M${i}`, 'R-MANY', 1).id)).state, 'accepted');
  const last = await w.refunds.drive(created(w, 'M50', 'R-MANY', 1).id);
  t.equal(last.state, 'failed');
  t.equal(last.finalCode, 'ERROR');
  t.equal(w.sim.refunds().length, 50);
});

t.test('a journal written before refunds existed opens, keeps every sale and takes refunds', async (t) => {
  const dir = tempDir();
  const path = join(dir, 'old.db');
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  MIGRATIONS[0]!(db);
  db.pragma('user_version = 1');
  db.prepare(
    "INSERT INTO sales (ref, amount_fen, out_trade_no, state, transaction_id, created_at, updated_at) VALUES ('OLD1', 1234, 'TESTBOX1ABCD00000001', 'paid', '4200001', 1, 1)",
  ).run();
  db.close();
  const readonly = Journal.open(path, { deviceId: DEVICE_ID, clock: new VirtualClock(), readonly: true });
  t.same(readonly.refunds.recent(5), [], 'read-only at schema 1: no refunds, no error');
  t.match(readonly.byOutTradeNo('TESTBOX1ABCD00000001'), { ref: 'OLD1', state: 'paid', paidAt: null }, 'its sales read, without the newer columns');
  t.equal(readonly.latestReconciliation(), null);
  readonly.close();
  const journal = Journal.open(path, { deviceId: DEVICE_ID, clock: new VirtualClock() });
  t.teardown(() => journal.close());
  t.equal(journal.pragmas().userVersion, SCHEMA_VERSION);
  t.match(journal.byOutTradeNo('TESTBOX1ABCD00000001'), { ref: 'OLD1', amountFen: 1234, state: 'paid', transactionId: '4200001' });
  t.match(journal.refunds.create({ rid: 'OLDR', ref: 'OLD1', amountFen: 234, source: 'technician' }), { kind: 'created' });
});

t.test('an accepted answer naming another amount, or refundquery answers that do not verify: never REFUNDED on their word', async (t) => {
  const clock = new VirtualClock();
  const sim = await GatewaySimulator.start({ ...MERCHANT, clock });
  t.teardown(() => sim.close());
  // A correctly signed answer that says another refund_fee; refundquery's answers forged (signature broken).
  const proxy = await rewritingProxy(sim, (path, fields) => {
    if (path === '/secapi/pay/refund' && fields.result_code === 'SUCCESS') return { ...fields, refund_fee: '1' };
    return null;
  });
  t.teardown(() => proxy.close());
  const w = await createWorld({ clock, simulator: sim, client: { apiBase: proxy.origin } });
  t.teardown(() => w.close());
  await paidSale(w, 'R-ECHO', 2000, { outcome: 'SUCCESS', settleAfterMs: 600_000 });
  const refund = created(w, 'RID-ECHO', 'R-ECHO', 900);
  const after = await w.refunds.drive(refund.id);
  t.ok(proxy.rewritten >= 1, 'the answer really was rewritten');
  // The mismatching answer is not believed; refundquery (not rewritten) finds the refund accepted under our number.
  t.equal(after.state, 'accepted');
  t.same(
    w.journal.refunds.events(refund.id).map((e) => e.kind),
    ['created', 'refund_sent', 'refund_answer', 'refundquery_answer'],
  );
  t.ok(w.log.lines.some((l) => l.startsWith('<3>WeChat Pay answered a refund with another number or amount')));
  t.equal(w.sim.refunds()[0]!.refundFee, 900, 'WeChat Pay holds the refund the journal asked for');
});
