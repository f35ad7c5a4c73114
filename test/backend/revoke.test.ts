import t from 'tap';
import { createBackendWorld, freshCode, type BackendWorld } from './helpers.js';

/**
 * Revocation never strands money (contract §8): a revoked box can do nothing new, but may still orderquery and
 * reverse its own orders made before the revocation, so a sale cut off by a revoke gives the payer's money back.
 */

let world: BackendWorld;
t.beforeEach(async () => {
  world = await createBackendWorld();
});
t.afterEach(async () => {
  await world.close();
});

t.test('revoked during the password wait: the sale ends reversed at WeChat Pay, nothing kept', async (t) => {
  const box = await world.box('SHOPR');
  const code = freshCode();
  world.sim.setScenario(code, { outcome: 'userpaying' });
  let revoked = false;
  const stop = world.sim.onRequest((call) => {
    // The payer is asked for the password; the merchant revokes the box now.
    if (call === 'orderquery' && !revoked) {
      revoked = true;
      void world.server.revoke(box.deviceId);
    }
  });
  t.teardown(stop);
  const started = box.engine.startSale('R1', 800);
  if (started.kind !== 'open') throw new Error('not open');
  const sale = await box.engine.pay(started.sale.id, code);
  t.ok(revoked, 'revoked mid-sale');
  t.equal(sale.state, 'reversed', `ended ${sale.state} ${sale.finalCode}`);
  const entry = world.sim.entry(sale.outTradeNo);
  t.ok(entry?.reversed, 'reversed at WeChat Pay');
  t.notOk(entry?.charged, "the payer's money is not kept");
  const calls = await world.store.calls({ deviceId: box.deviceId });
  t.equal(calls.at(-1)?.call, 'reverse');
  t.equal(calls.at(-1)?.outcome, 'success', 'the reverse went through after the revoke');
  t.ok((await world.store.box(box.deviceId))?.revokedAt, 'the box stays revoked');
});

t.test('revoked while its micropay is upstream: the connection is cut, the box queries and reverses', async (t) => {
  const box = await world.box('SHOPM');
  const code = freshCode();
  world.sim.setScenario(code, { outcome: 'userpaying', faults: { micropay: [{ kind: 'delay', ms: 300 }] } });
  const stop = world.sim.onRequest((call) => {
    if (call === 'micropay') void world.server.revoke(box.deviceId);
  });
  t.teardown(stop);
  const started = box.engine.startSale('R1', 500);
  if (started.kind !== 'open') throw new Error('not open');
  const sale = await box.engine.pay(started.sale.id, code);
  t.not(sale.finalCode, 'REVERSE_PENDING', 'not stranded');
  t.equal(sale.state, 'reversed');
  t.ok(world.sim.entry(sale.outTradeNo)?.reversed);
  t.notOk(world.sim.entry(sale.outTradeNo)?.charged);
});

t.test('a revoked box can do nothing new: no micropay, no refund, no bill, no query of an order made after', async (t) => {
  const box = await world.box('SHOPN');
  const started = box.engine.startSale('R1', 300);
  if (started.kind !== 'open') throw new Error('not open');
  const paid = await box.engine.pay(started.sale.id, freshCode());
  t.equal(paid.state, 'paid');
  await world.server.revoke(box.deviceId);
  const attacker = world.gatewayFor(box.certificate);
  const before = world.sim.requests().length;
  const micropay = await attacker.micropay({ outTradeNo: 'SHOPNXXXX000000001', totalFee: 1, authCode: freshCode(), body: 'x' });
  t.equal(micropay.kind === 'business' && micropay.fields.backend_refusal, 'BOX_REVOKED');
  const refund = await attacker.refund({ outTradeNo: paid.outTradeNo, outRefundNo: 'SHOPNR0001', totalFee: 300, refundFee: 300 });
  t.equal(refund.kind === 'business' && refund.fields.backend_refusal, 'BOX_REVOKED');
  const bill = await attacker.downloadbill({ billDate: '20261128' });
  t.match(bill.kind === 'unknown' && bill.message, /BOX_REVOKED/);
  const stranger = await attacker.orderquery({ outTradeNo: 'SHOPNXXXX000000002' });
  t.match(stranger.kind === 'unknown' && stranger.message, /BOX_REVOKED/, 'an order it never started before the revoke');
  t.equal(world.sim.requests().length, before, 'nothing new reached WeChat Pay');
  // Its own order from before: it may still ask.
  const query = await attacker.orderquery({ outTradeNo: paid.outTradeNo });
  t.equal(query.kind, 'success');
  t.equal(query.kind === 'success' && query.fields.trade_state, 'SUCCESS');
});
