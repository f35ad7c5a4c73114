import t from 'tap';
import { GatewaySimulator } from '../../src/simulator/gateway.js';
import { WechatPayClient } from '../../src/wechatpay/client.js';
import { MERCHANT, clientOptions, freshCode } from '../helpers/world.js';

/**
 * The backend's pool to WeChat Pay (payConnections > 1): several micropays at once on their own connections,
 * and, while warm, a spare connection ready whenever the pool may grow, so a sale that needs a new connection
 * takes the spare instead of waiting for a handshake.
 */

async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`never: ${what}`);
}

t.test('a pool of 4, warm: concurrent micropays on their own connections, each new one a spare made ahead', async (t) => {
  const sim = await GatewaySimulator.start({ ...MERCHANT });
  t.teardown(() => sim.close());
  const client = new WechatPayClient({ ...clientOptions(sim), payConnections: 4 });
  t.teardown(() => client.close());
  client.warm();
  await until('a spare is open', () => client.stats.warmed === 1);

  const first = await client.micropay({ outTradeNo: 'POOL0001', totalFee: 100, authCode: freshCode(), body: 'pool' });
  t.equal(first.kind, 'success');
  t.equal(client.stats.handshakes, 0, 'the first micropay used the spare');
  await until('the next spare is open (the pool may still grow)', () => client.stats.warmed === 2);

  // Two at once, each answered after 300 ms: one on the pool's idle connection, the other on the spare.
  const codes = [freshCode(), freshCode()];
  for (const code of codes) sim.setScenario(code, { outcome: 'paid', faults: { micropay: [{ kind: 'delay', ms: 300 }] } });
  let arrived = 0;
  const stop = sim.onRequest((call) => {
    if (call === 'micropay') arrived++;
  });
  t.teardown(stop);
  const seenAtFirstAnswer: number[] = [];
  const both = await Promise.all(
    codes.map((code, i) =>
      client.micropay({ outTradeNo: `POOL000${i + 2}`, totalFee: 100, authCode: code, body: 'pool' }).then((o) => {
        seenAtFirstAnswer.push(arrived);
        return o;
      }),
    ),
  );
  t.ok(both.every((o) => o.kind === 'success'));
  t.equal(seenAtFirstAnswer[0], 2, 'both were at WeChat Pay before the first answer came: at once, not one after the other');
  t.equal(client.stats.handshakes, 0, 'no micropay waited for a handshake');
  t.ok(sim.connections >= 2, `two connections to WeChat Pay (${sim.connections})`);
});

t.test('a box keeps one connection: its micropays go one after the other', async (t) => {
  const sim = await GatewaySimulator.start({ ...MERCHANT });
  t.teardown(() => sim.close());
  const client = new WechatPayClient(clientOptions(sim));
  t.teardown(() => client.close());
  await client.orderquery({ outTradeNo: 'BOXPOOL1' });
  const codes = [freshCode(), freshCode()];
  for (const code of codes) sim.setScenario(code, { outcome: 'paid', faults: { micropay: [{ kind: 'delay', ms: 300 }] } });
  let arrived = 0;
  const stop = sim.onRequest((call) => {
    if (call === 'micropay') arrived++;
  });
  t.teardown(stop);
  const seen: number[] = [];
  await Promise.all(
    codes.map((code, i) => client.micropay({ outTradeNo: `BOXPOOL${i + 2}`, totalFee: 100, authCode: code, body: 'pool' }).then(() => seen.push(arrived))),
  );
  t.equal(seen[0], 1, 'one connection: the second was sent only after the first was answered');
  t.equal(sim.connections, 1);
});
