import t from 'tap';
import { refundLine } from '../../src/payment/refund.js';
import { createBackendWorld, freshCode, type BackendWorld, type Box } from './helpers.js';

/**
 * The merchant's refund policy at the backend (contract §8), proven like an attacker: a box's own certificate
 * used directly against the backend (world.gatewayFor) asks for what the box's engine never would, and the
 * simulator's ledger shows nothing moved. The box's side: a refused refund is `FAILED RID CODE TEXT` at once.
 */

async function paySale(box: Box, ref: string, amountFen: number, code = freshCode()) {
  const started = box.engine.startSale(ref, amountFen);
  if (started.kind !== 'open') throw new Error(`sale not opened: ${started.kind}`);
  return box.engine.pay(started.sale.id, code);
}

async function registerRefund(box: Box, ref: string, amountFen: number, rid: string) {
  const requested = box.refunds.request({ ref, amountFen, rid, source: 'technician' });
  if (requested.kind !== 'created') throw new Error(`refund not recorded: ${requested.kind}`);
  return box.refunds.drive(requested.refund.id);
}

let world: BackendWorld;
t.beforeEach(async () => {
  world = await createBackendWorld({ policy: { refunds: 'off', refundDayMaxFen: 1000 } });
});
t.afterEach(async () => {
  await world.close();
});

t.test('refunds are off unless the box was enrolled --refunds on: FAILED REFUNDS_OFF at once, not pending, nothing held', async (t) => {
  const box = await world.box('SHOPOFF');
  const sale = await paySale(box, 'R1', 900);
  t.equal(sale.state, 'paid');
  const before = world.sim.requests().length;
  const refund = await registerRefund(box, 'R1', 900, 'T1');
  t.equal(refund.state, 'failed', 'ended, not REFUND_PENDING');
  t.match(refundLine(refund), /^FAILED T1 REFUNDS_OFF The merchant's backend does not let this box refund/);
  t.equal(world.sim.requests().length, before, 'nothing reached WeChat Pay');
  t.equal(world.sim.refunds().length, 0);
  // Not counted against the sale: the whole amount can be asked for again (and is refused again, by policy).
  const again = box.refunds.request({ ref: 'R1', amountFen: 900, rid: 'T2', source: 'technician' });
  t.equal(again.kind, 'created', 'the failed refund holds nothing of the sale');
  const calls = await world.store.calls({ deviceId: 'SHOPOFF' });
  t.same(calls.filter((c) => c.call === 'refund').map((c) => [c.outcome, c.code]), [['refused', 'REFUNDS_OFF']]);
});

t.test('a box enrolled --refunds on refunds its paid sale; the backend tells WeChat Pay the amount it charged', async (t) => {
  const box = await world.box('SHOPON', { policy: { refunds: 'on' } });
  const sale = await paySale(box, 'R1', 900);
  const refund = await registerRefund(box, 'R1', 300, 'T1');
  t.equal(refund.state, 'accepted');
  t.equal(world.sim.refunds().length, 1);
  t.equal(world.sim.refunds()[0]?.refundFee, 300);
  t.equal(world.sim.entry(sale.outTradeNo)?.totalFee, 900);
  const micropay = (await world.store.calls({ deviceId: 'SHOPON' })).find((c) => c.call === 'micropay');
  t.ok(micropay?.paidAt && Math.abs(micropay.paidAt - world.clock.now()) < 60_000, "the journal keeps WeChat Pay's payment time (time_end) for reconciliation");
});

t.test('attacker: a refund of an order the backend never charged is refused, nothing reaches WeChat Pay', async (t) => {
  const box = await world.box('SHOPA', { policy: { refunds: 'on' } });
  const declined = freshCode();
  world.sim.setScenario(declined, { outcome: 'NOTENOUGH' });
  const failed = await paySale(box, 'R1', 500, declined);
  t.equal(failed.state, 'failed');
  const attacker = world.gatewayFor(box.certificate);
  const before = world.sim.requests().length;
  for (const outTradeNo of [failed.outTradeNo, 'SHOPAXXXX000000099']) {
    const outcome = await attacker.refund({ outTradeNo, outRefundNo: `SHOPAR${outTradeNo.slice(-6)}`, totalFee: 500, refundFee: 500 });
    t.equal(outcome.kind, 'business');
    t.equal(outcome.kind === 'business' && outcome.fields.backend_refusal, 'NOT_CHARGED', outTradeNo);
    t.equal(outcome.kind === 'business' && outcome.errCode, 'NOT_PAID');
  }
  // A reversed sale is not charged either.
  const userpaying = freshCode();
  world.sim.setScenario(userpaying, { outcome: 'userpaying' });
  const reversed = await paySale(box, 'R2', 700, userpaying);
  t.equal(reversed.state, 'reversed');
  const afterSale = world.sim.requests().length;
  const outcome = await attacker.refund({ outTradeNo: reversed.outTradeNo, outRefundNo: 'SHOPARREV1', totalFee: 700, refundFee: 700 });
  t.equal(outcome.kind === 'business' && outcome.fields.backend_refusal, 'NOT_CHARGED');
  t.equal(world.sim.requests().length - afterSale, 0, 'nothing upstream for the reversed one');
  t.equal(world.sim.requests().filter((r) => r.call === 'refund').length, 0, 'no refund ever reached WeChat Pay');
  t.ok(before > 0);
});

t.test('attacker: a false totalFee is refused, and refunds never pass the order amount the backend charged', async (t) => {
  const box = await world.box('SHOPB', { policy: { refunds: 'on' } });
  const sale = await paySale(box, 'R1', 600);
  t.equal(sale.state, 'paid');
  const attacker = world.gatewayFor(box.certificate);
  const inflated = await attacker.refund({ outTradeNo: sale.outTradeNo, outRefundNo: 'SHOPBR000001', totalFee: 60_000, refundFee: 6_000 });
  t.equal(inflated.kind === 'business' && inflated.fields.backend_refusal, 'BAD_REQUEST', 'a claimed total_fee that is not the charge');
  t.equal(world.sim.refunds().length, 0);

  const first = await attacker.refund({ outTradeNo: sale.outTradeNo, outRefundNo: 'SHOPBR000002', totalFee: 600, refundFee: 400 });
  t.equal(first.kind, 'success');
  const over = await attacker.refund({ outTradeNo: sale.outTradeNo, outRefundNo: 'SHOPBR000003', totalFee: 600, refundFee: 201 });
  t.equal(over.kind === 'business' && over.fields.backend_refusal, 'OVER_AMOUNT');
  // The same refund sent again (a retry) passes and refunds nothing twice.
  const retry = await attacker.refund({ outTradeNo: sale.outTradeNo, outRefundNo: 'SHOPBR000002', totalFee: 600, refundFee: 400 });
  t.equal(retry.kind, 'success', 'a retry of a forwarded refund is not counted again');
  const rest = await attacker.refund({ outTradeNo: sale.outTradeNo, outRefundNo: 'SHOPBR000004', totalFee: 600, refundFee: 200 });
  t.equal(rest.kind, 'success', 'what is left can be refunded');
  const total = world.sim.refunds().reduce((sum, r) => sum + r.refundFee, 0);
  t.equal(total, 600, 'WeChat Pay refunded exactly the sale');
});

t.test('attacker: the day cap per box (SCANBOX_BACKEND_REFUND_DAY_MAX); refused refunds count for nothing', async (t) => {
  const box = await world.box('SHOPC', { policy: { refunds: 'on' } });
  const other = await world.box('SHOPD', { policy: { refunds: 'on' } });
  const a = await paySale(box, 'R1', 800);
  const b = await paySale(box, 'R2', 800);
  const c = await paySale(other, 'R1', 800);
  const attacker = world.gatewayFor(box.certificate);
  t.equal((await attacker.refund({ outTradeNo: a.outTradeNo, outRefundNo: 'SHOPCR00001', totalFee: 800, refundFee: 800 })).kind, 'success');
  const capped = await attacker.refund({ outTradeNo: b.outTradeNo, outRefundNo: 'SHOPCR00002', totalFee: 800, refundFee: 800 });
  t.equal(capped.kind === 'business' && capped.fields.backend_refusal, 'REFUND_LIMIT');
  // Through the engine: FAILED REFUND_LIMIT with the backend's reason, at once.
  const refund = await registerRefund(box, 'R2', 300, 'T1');
  t.equal(refund.state, 'failed');
  t.match(refundLine(refund), /^FAILED T1 REFUND_LIMIT This box's refunds today would pass the merchant's daily limit/);
  // The refused ones took nothing of the cap: 800 + 200 = 1000 fits.
  t.equal((await attacker.refund({ outTradeNo: b.outTradeNo, outRefundNo: 'SHOPCR00003', totalFee: 800, refundFee: 200 })).kind, 'success');
  t.equal((await attacker.refund({ outTradeNo: b.outTradeNo, outRefundNo: 'SHOPCR00004', totalFee: 800, refundFee: 1 })).kind, 'business');
  // The cap is per box: another box's day is its own.
  const theirs = await registerRefund(other, 'R1', 800, 'T1');
  t.equal(theirs.state, 'accepted');
  t.same(
    world.sim.refunds().map((r) => r.refundFee).sort((x, y) => x - y),
    [200, 800, 800],
  );
  t.ok(c.state === 'paid');
});
