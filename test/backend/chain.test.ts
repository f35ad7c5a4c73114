import t from 'tap';
import { BackendChain } from '../../src/backend/chain.js';
import { BackendGateway } from '../../src/backend/gateway.js';
import { BackendServer } from '../../src/backend/server.js';
import { memoryLogger } from '../../src/log.js';
import { PaymentEngine } from '../../src/payment/engine.js';
import { Journal } from '../../src/journal/journal.js';
import { enrolBox } from '../../src/backend/enrol.js';
import { freePort } from '../helpers/postgres.js';
import { createBackendWorld, freshCode, POLICY, type BackendWorld } from './helpers.js';
import { join } from 'node:path';

/**
 * A box with several backends (SCANBOX_BACKEND with several origins): BackendChain over real backends (two
 * BackendServers on one store, as two processes on one database) and the simulator; the money is read in the
 * simulator's ledger.
 */

let world: BackendWorld;
let second: BackendServer;
t.beforeEach(async () => {
  world = await createBackendWorld();
  second = await BackendServer.start({ listen: { host: '127.0.0.1', port: 0 }, store: world.store, pki: world.pki, client: world.upstream, policy: POLICY, log: world.backendLog, recheckMs: 0 });
});
t.afterEach(async () => {
  await second.close();
  await world.close();
});

async function chainBox(origins: string[], deviceId = 'CHAIN01') {
  const { certificate } = await enrolBox(world.pki, world.store, deviceId, {});
  const log = memoryLogger('debug');
  const chain = new BackendChain({
    origins,
    certificate,
    caPem: world.pki.caPem,
    log,
    timeouts: { micropay: 5000, orderquery: 5000, reverse: 5000, refund: 5000, refundquery: 5000, connect: 2000 },
  });
  const journal = Journal.open(join(world.dir, `${deviceId}.db`), { deviceId, clock: world.clock });
  const engine = new PaymentEngine({ journal, gateway: chain, clock: world.clock, log, body: 'scanbox test', deviceId });
  t.teardown(async () => {
    await engine.stopReversalQueue();
    journal.close();
    await chain.close();
  });
  const pay = async (ref: string, fen: number) => {
    const started = engine.startSale(ref, fen);
    if (started.kind !== 'open') throw new Error(started.kind);
    return engine.pay(started.sale.id, freshCode());
  };
  return { chain, engine, journal, log, pay };
}

t.test('the first backend cannot be reached: the micropay never left the box, so it goes to the next at once; the box keeps to that one', async (t) => {
  const dead = `https://127.0.0.1:${await freePort()}`;
  const box = await chainBox([dead, world.server.origin]);
  const sale = await box.pay('C1', 1500);
  t.equal(sale.state, 'paid');
  const entry = world.sim.entry(sale.outTradeNo)!;
  t.equal(entry.micropayCount, 1, 'one micropay reached WeChat Pay');
  t.equal(entry.charged, true);
  const states = box.chain.backends();
  t.match(states, [
    { origin: dead, current: false, state: 'unreachable', lastFailure: /NETWORK/ },
    { origin: world.server.origin, current: true, state: 'ok' },
  ]);
  const again = await box.pay('C2', 200);
  t.equal(again.state, 'paid');
  t.match(box.chain.backends()[1], { current: true }, 'kept to the one that works');
  t.ok(box.log.lines.some((l) => /never left the box; sending it to the next backend/.test(l)));
});

t.test('the backend in use goes away between sales: the next sale moves to the other, every sale paid once', async (t) => {
  const box = await chainBox([world.server.origin, second.origin]);
  const first = await box.pay('D1', 100);
  t.equal(first.state, 'paid');
  t.match(box.chain.backends(), [{ current: true, state: 'ok' }, { current: false, state: 'unused' }]);
  await world.server.close();
  const next = await box.pay('D2', 200);
  t.equal(next.state, 'paid');
  t.equal(world.sim.entry(next.outTradeNo)!.micropayCount, 1);
  t.match(box.chain.backends(), [{ current: false, state: 'unreachable' }, { current: true, state: 'ok' }]);
  const calls = await world.store.calls({ deviceId: 'CHAIN01' });
  t.same(
    calls.map((c) => [c.call, c.outcome]),
    [
      ['micropay', 'success'],
      ['micropay', 'success'],
    ],
    'both backends record in the one journal',
  );
});

t.test('no backend can be reached: the sale ends FAILED at once with nothing charged', async (t) => {
  const box = await chainBox([`https://127.0.0.1:${await freePort()}`, `https://127.0.0.1:${await freePort()}`]);
  const sale = await box.pay('E1', 300);
  t.equal(sale.state, 'failed');
  t.equal(world.sim.entry(sale.outTradeNo), undefined, 'nothing reached WeChat Pay');
  t.match(box.chain.backends(), [{ state: 'unreachable' }, { state: 'unreachable' }]);
});

t.test('a backend with a recheck period reuses an open connection standing for micropay and orderquery only: a policy change holds for the next refund, a revoke elsewhere from its next recheck', async (t) => {
  // A third backend on the same store whose recheck timer never fires during the test (the test calls recheck(),
  // as a NOTIFY or the timer would): its connections' standings are reused for the whole period.
  const cached = await BackendServer.start({ listen: { host: '127.0.0.1', port: 0 }, store: world.store, pki: world.pki, client: world.upstream, policy: POLICY, log: world.backendLog, recheckMs: 600_000 });
  t.teardown(() => cached.close());
  const { certificate } = await enrolBox(world.pki, world.store, 'STAND01', { policy: { refunds: 'on' } });
  const viaCached = new BackendGateway({
    origin: cached.origin,
    certificate,
    caPem: world.pki.caPem,
    timeouts: { micropay: 5000, orderquery: 5000, reverse: 5000, refund: 5000, refundquery: 5000, connect: 2000 },
  });
  t.teardown(() => viaCached.close());
  const paid = await viaCached.micropay({ outTradeNo: 'STAND01000000000001', totalFee: 500, authCode: freshCode(), body: 'x' });
  t.equal(paid.kind, 'success', 'a micropay on a new connection (its standing read from the store)');
  t.equal(cached.connections('STAND01'), 1);

  // `scanbox backend policy STAND01 --refunds off --max-amount 100` from another process: the store alone.
  t.equal(await world.store.setPolicy('STAND01', { refunds: 'off', maxAmountFen: 100 }), true);
  const refund = await viaCached.refund({ outTradeNo: 'STAND01000000000001', outRefundNo: 'STAND01R001', totalFee: 500, refundFee: 100 });
  t.equal(refund.kind === 'business' && refund.fields.backend_refusal, 'REFUNDS_OFF', 'the very next refund on the open connection sees the change');
  const beforeRecheck = await viaCached.micropay({ outTradeNo: 'STAND01000000000002', totalFee: 300, authCode: freshCode(), body: 'x' });
  t.equal(beforeRecheck.kind, 'success', "a micropay within the recheck period still has the box's limit as last read");
  t.equal(await cached.recheck(), 0, 'the recheck keeps the connection (the box is still good)');
  const afterRecheck = await viaCached.micropay({ outTradeNo: 'STAND01000000000003', totalFee: 300, authCode: freshCode(), body: 'x' });
  t.equal(afterRecheck.kind === 'business' && afterRecheck.fields.backend_refusal, 'AMOUNT_LIMIT', 'after the recheck the new limit holds');
  t.equal(world.sim.entry('STAND01000000000003'), undefined, 'nothing of it reached WeChat Pay');

  // Revoked through the other backend (no NOTIFY on SQLite): this one's recheck cuts the open connection.
  t.equal(await world.server.revoke('STAND01'), true);
  t.ok((await cached.recheck()) >= 1, 'the open connections are cut by the recheck');
  t.equal(cached.connections('STAND01'), 0);
  // The box's pool may not yet have seen the cut: a first call on a cut connection cannot reach the backend.
  let refused = await viaCached.orderquery({ outTradeNo: 'STAND01000000000009' });
  if (refused.kind === 'unknown' && /cannot reach the backend/.test(refused.message)) refused = await viaCached.orderquery({ outTradeNo: 'STAND01000000000009' });
  t.match(refused.kind === 'unknown' && refused.message, /BOX_REVOKED/, 'and the next call is refused');
  const calls = await world.store.calls({ deviceId: 'STAND01' });
  t.same(
    calls.filter((c) => c.call === 'micropay').map((c) => [c.outTradeNo, c.outcome]),
    [
      ['STAND01000000000001', 'success'],
      ['STAND01000000000002', 'success'],
      ['STAND01000000000003', 'refused'],
    ],
    'every micropay in the journal, the refused one as refused',
  );
});
