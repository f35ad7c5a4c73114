import t from 'tap';
import { BackendChain } from '../../src/backend/chain.js';
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
