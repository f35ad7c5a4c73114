import t from 'tap';
import { GatewaySimulator } from '../../src/simulator/gateway.js';
import { WechatPayClient } from '../../src/wechatpay/client.js';
import { MERCHANT, clientOptions, freshCode } from '../helpers/world.js';

/**
 * The spare connection, on real TLS against the simulator: while a sale is open (warm) a live connection to
 * the API origin is ready, opened again (resuming the TLS session) whenever the server closes an idle one, so
 * no request of the sale waits for a handshake; without it (cool), a request after an idle close pays one.
 * The server's idle close is made to happen now (closeIdleConnections), not waited for.
 */

async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`never: ${what}`);
}

t.test('warm: the sale never waits for a handshake; a closed spare is opened again and resumes the session', async (t) => {
  const sim = await GatewaySimulator.start({ ...MERCHANT });
  t.teardown(() => sim.close());
  const client = new WechatPayClient(clientOptions(sim));
  t.teardown(() => client.close());

  client.warm();
  await until('a spare connection is open', () => client.stats.warmed === 1 && sim.connections === 1);
  const paid = await client.micropay({ outTradeNo: 'WARM0001', totalFee: 100, authCode: freshCode(), body: 'warm' });
  t.equal(paid.kind, 'success');
  t.equal(client.stats.handshakes, 0, 'the micropay used the spare: no handshake on the customer\'s time');
  t.equal(sim.connections, 1);

  // The server closes the idle connection (WeChat Pay does after about 8 s): a new spare, resuming the session.
  sim.closeIdleConnections();
  await until('a second spare is open', () => client.stats.warmed === 2 && sim.connections === 2);
  t.ok(client.stats.resumed >= 1 && sim.resumedConnections >= 1, 'the new connection resumed the TLS session');
  const query = await client.orderquery({ outTradeNo: 'WARM0001' });
  t.equal(query.kind, 'success');
  t.equal(client.stats.handshakes, 0, 'the query of the password wait did not wait for a handshake either');

  // The sale is over: nothing more is opened ahead; the next request after an idle close pays a handshake.
  client.cool();
  sim.closeIdleConnections();
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.equal(client.stats.warmed, 2, 'cool: no spare opened');
  const later = await client.orderquery({ outTradeNo: 'WARM0001' });
  t.equal(later.kind, 'success');
  t.equal(client.stats.handshakes, 1, 'without a spare the request waited for its own connection');
  t.equal(sim.requests().length, 3, 'no request was ever sent just to keep a connection open');
});

t.test('warm while the pool already holds a live connection: no spare is opened', async (t) => {
  const sim = await GatewaySimulator.start({ ...MERCHANT });
  t.teardown(() => sim.close());
  const client = new WechatPayClient(clientOptions(sim));
  t.teardown(() => client.close());
  await client.orderquery({ outTradeNo: 'WARM0002' });
  client.warm();
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.equal(client.stats.warmed, 0);
  t.equal(sim.connections, 1);
  client.cool();
});

t.test('a refused origin: warm tries quietly, the micropay still proves it never left', async (t) => {
  const sim = await GatewaySimulator.start({ ...MERCHANT });
  await sim.close();
  // The simulator's address, now that nothing listens there: every connection is refused.
  const client = new WechatPayClient({ ...clientOptions(sim) });
  t.teardown(() => client.close());
  client.warm();
  const outcome = await client.micropay({ outTradeNo: 'WARM0003', totalFee: 100, authCode: freshCode(), body: 'warm' });
  t.match(outcome, { kind: 'unknown', failure: 'NETWORK', unsent: true });
  t.equal(client.stats.warmed, 0);
  client.cool();
});
