import net, { type AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { VirtualClock } from '../../src/clock.js';
import { createTestPki } from '../../src/simulator/ca.js';
import { GatewaySimulator } from '../../src/simulator/gateway.js';
import { createWorld, MERCHANT, type World, type WorldOptions } from '../helpers/world.js';
import { chargedFor, events, registerLine, requestsFor, rewritingProxy, sell } from '../helpers/faults.js';

/**
 * The fault matrix, part 1: what can go wrong between the box and WeChat Pay, one test per fault, through
 * the real engine, a real journal file and real HTTPS to the simulator (time is virtual). Each test checks
 * the three records that must agree: the sale's journal row, the line the register is told (derived from
 * that row alone, as the box does), and the gateway's ledger of what the payer was really charged.
 * The DNS failure of the primary domain is in failover.test.ts: it needs the box's offline detection.
 */

/** One certificate authority for the file: making its keys is most of a simulator's start-up time. */
const pki = createTestPki({ mchId: MERCHANT.mchId });

/** A fresh simulator (empty ledger) on the world's virtual clock, the real engine and a new journal file. */
async function withWorld(t: Test, options: WorldOptions, body: (w: World) => Promise<void>): Promise<void> {
  const clock = options.clock ?? new VirtualClock();
  const sim = options.simulator ?? (await GatewaySimulator.start({ ...MERCHANT, clock, pki }));
  const world = await createWorld({ ...options, clock, simulator: sim });
  t.teardown(async () => {
    await world.close();
    if (!options.simulator) await sim.close();
  });
  await body(world);
}

/** Client timeouts short enough for a hung call to cost a fraction of a second of real time. */
const SHORT = { micropay: 400, orderquery: 400, reverse: 400, connect: 2000 };

t.test('micropay timeout -> resolved by orderquery as PAID, charged once', async (t) => {
  await withWorld(t, { client: { timeouts: SHORT } }, async (w) => {
    // The gateway charges, then never answers: the box's own timeout fires.
    const { sale } = await sell(w, { outcome: 'paid', faults: { micropay: [{ kind: 'hang' }] } }, { ref: 'F-MP-TIMEOUT' });
    t.equal(sale.state, 'paid');
    t.match(events(w, sale, 'micropay_answer'), [{ result: 'unknown', failure: 'TIMEOUT' }], 'micropay itself was unknown');
    t.equal(registerLine(sale), `PAID F-MP-TIMEOUT ${sale.outTradeNo} ${sale.transactionId}`);
    const entry = w.sim.entry(sale.outTradeNo)!;
    t.match(entry, { charged: true, micropayCount: 1, queryCount: 1, reverseCount: 0, transactionId: sale.transactionId });
    t.equal(chargedFor(w.sim, 'F-MP-TIMEOUT').length, 1, 'charged once');
  });
});

t.test('orderquery timeout -> the next query decides: PAID, charged once, nothing reversed', async (t) => {
  await withWorld(t, { client: { timeouts: SHORT } }, async (w) => {
    // The payer confirms at 3 s; the query at 5 s hangs; the query at 10 s answers SUCCESS.
    const { sale, progress } = await sell(
      w,
      { outcome: 'userpaying', confirmAfterMs: 3000, faults: { orderquery: [{ kind: 'hang' }] } },
      { ref: 'F-OQ-TIMEOUT' },
    );
    t.same(progress, ['scanned', 'password']);
    t.equal(sale.state, 'paid');
    t.match(events(w, sale, 'orderquery_answer'), [{ result: 'unknown', failure: 'TIMEOUT' }, { result: 'success', trade_state: 'SUCCESS' }]);
    t.equal(registerLine(sale), `PAID F-OQ-TIMEOUT ${sale.outTradeNo} ${sale.transactionId}`);
    t.match(w.sim.entry(sale.outTradeNo), { charged: true, micropayCount: 1, queryCount: 2, reverseCount: 0, reversed: false });
    t.equal(chargedFor(w.sim, 'F-OQ-TIMEOUT').length, 1);
  });
});

t.test('reverse timeout -> reverse sent again until confirmed: CANCELLED, the charge refunded once', async (t) => {
  await withWorld(t, { client: { timeouts: SHORT } }, async (w) => {
    // The cashier cancels while micropay is in flight and it charges; the first reverse acts but never answers.
    const { sale } = await sell(w, { outcome: 'paid', faults: { reverse: [{ kind: 'hang' }] } }, { ref: 'F-RV-TIMEOUT', cancelAfter: 'scanned' });
    t.equal(sale.state, 'reversed');
    t.equal(sale.finalCode, 'CANCELLED');
    t.equal(sale.reverseAttempts, 2);
    t.match(events(w, sale, 'reverse_answer'), [{ result: 'unknown', failure: 'TIMEOUT' }, { result: 'success', recall: 'N' }]);
    t.match(registerLine(sale), /^FAILED F-RV-TIMEOUT CANCELLED \S/);
    const entry = w.sim.entry(sale.outTradeNo)!;
    t.match(entry, { everCharged: true, charged: false, reversed: true, refundedFen: 1234, reverseCount: 2 });
    t.equal(chargedFor(w.sim, 'F-RV-TIMEOUT').length, 0);
  });
});

t.test('connection reset before the gateway acts -> queried, reversed (REVERSED): no order at the gateway, nothing charged', async (t) => {
  await withWorld(t, {}, async (w) => {
    const { sale } = await sell(w, { outcome: 'paid', faults: { micropay: [{ kind: 'drop_before' }] } }, { ref: 'F-RESET-BEFORE' });
    t.equal(sale.state, 'reversed');
    t.equal(sale.finalCode, 'REVERSED');
    t.match(events(w, sale, 'micropay_answer'), [{ result: 'unknown', failure: 'NETWORK' }]);
    t.notOk('unsent' in events(w, sale, 'micropay_answer')[0]!, 'a reset after the request was written is no proof it never left');
    t.ok(events(w, sale, 'orderquery_answer').length >= 1, 'asked before giving up');
    t.match(registerLine(sale), /^FAILED F-RESET-BEFORE REVERSED \S/);
    t.equal(w.sim.entry(sale.outTradeNo), undefined, 'the gateway never created the order');
    t.equal(requestsFor(w.sim, 'micropay', sale.outTradeNo).length, 1, 'micropay is not re-sent');
    t.equal(requestsFor(w.sim, 'reverse', sale.outTradeNo).length, 1, 'reversed anyway: the box cannot know');
    t.equal(w.sim.ledger().length, 0);
  });
});

t.test('connection reset after the gateway acts -> resolved by orderquery as PAID, charged once', async (t) => {
  await withWorld(t, {}, async (w) => {
    const { sale } = await sell(w, { outcome: 'paid', faults: { micropay: [{ kind: 'drop_after' }] } }, { ref: 'F-RESET-AFTER' });
    t.equal(sale.state, 'paid');
    t.match(events(w, sale, 'micropay_answer'), [{ result: 'unknown', failure: 'NETWORK' }]);
    t.notOk('unsent' in events(w, sale, 'micropay_answer')[0]!, 'the reset came after the request: unknown, so asked');
    t.equal(registerLine(sale), `PAID F-RESET-AFTER ${sale.outTradeNo} ${sale.transactionId}`);
    t.match(w.sim.entry(sale.outTradeNo), { charged: true, micropayCount: 1, queryCount: 1, reverseCount: 0, transactionId: sale.transactionId });
    t.equal(chargedFor(w.sim, 'F-RESET-AFTER').length, 1);
  });
});

t.test('connection refused -> the micropay provably never left: FAILED OFFLINE at once, nothing queried, reversed or queued', async (t) => {
  // A port on this machine that nobody listens on: the connect is refused before any byte is written.
  const closed = net.createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  await withWorld(t, { client: { apiBase: `https://127.0.0.1:${port}` } }, async (w) => {
    const { sale } = await sell(w, { outcome: 'paid' }, { ref: 'F-REFUSED' });
    t.match(sale, { state: 'failed', finalCode: 'OFFLINE', reverseReason: null });
    t.match(registerLine(sale), /^FAILED F-REFUSED OFFLINE \S.*\(NETWORK\)$/);
    t.match(events(w, sale, 'micropay_answer'), [{ result: 'unknown', failure: 'NETWORK', message: /ECONNREFUSED/, unsent: /never left/ }]);
    t.same(w.journal.events(sale.id).map((e) => e.kind), ['created', 'micropay_sent', 'micropay_answer']);
    t.same(w.journal.pendingReversals(), []);
    t.same(w.sim.requests(), [], 'nothing reached the gateway');
  });
});

t.test('HTTP 5xx -> unknown, queried, reversed (REVERSED): nothing charged', async (t) => {
  await withWorld(t, {}, async (w) => {
    const { sale } = await sell(w, { outcome: 'paid', faults: { micropay: [{ kind: 'http_500' }] } }, { ref: 'F-HTTP-500' });
    t.equal(sale.state, 'reversed');
    t.equal(sale.finalCode, 'REVERSED');
    t.match(events(w, sale, 'micropay_answer'), [{ result: 'unknown', failure: 'HTTP_STATUS', message: /HTTP 500/ }]);
    t.match(registerLine(sale), /^FAILED F-HTTP-500 REVERSED \S/);
    t.same(requestsFor(w.sim, 'micropay', sale.outTradeNo).map((r) => r.status), [500]);
    t.equal(w.sim.entry(sale.outTradeNo), undefined, 'a 500 did not act');
    t.equal(requestsFor(w.sim, 'reverse', sale.outTradeNo).length, 1);
    t.equal(w.sim.ledger().length, 0);
  });
});

t.test('HTML 400 on reverse (no client certificate) -> CERT_REJECTED, REVERSE_PENDING while the charge stands; refunded once the certificate is back', async (t) => {
  const clock = new VirtualClock();
  await withWorld(t, { clock, client: { certificate: null } }, async (w) => {
    const { sale } = await sell(w, { outcome: 'paid' }, { ref: 'F-HTML-400', cancelAfter: 'scanned' });
    t.equal(sale.state, 'reversing');
    t.equal(sale.finalCode, 'REVERSE_PENDING');
    t.match(events(w, sale, 'reverse_answer'), Array(3).fill({ result: 'unknown', failure: 'CERT_REJECTED', message: /merchant certificate/ }));
    t.match(registerLine(sale), /^FAILED F-HTML-400 REVERSE_PENDING \S/);
    const reverses = requestsFor(w.sim, 'reverse', sale.outTradeNo);
    t.same(reverses.map((r) => [r.status, r.tls.authorized]), Array(3).fill([400, false]), 'nginx refused three times');
    t.ok(w.log.lines.some((l) => l.startsWith('<3>reversal not confirmed yet') && /failure=CERT_REJECTED/.test(l)), 'logged at error level with its cause');
    t.match(w.sim.entry(sale.outTradeNo), { charged: true, reversed: false }, 'the money is still held, and the register was told so');

    // The technician installs the certificate and restarts the box: the queue finishes the reversal.
    const fixed = await createWorld({ clock, dbPath: w.dbPath, simulator: w.sim });
    t.teardown(() => fixed.close());
    clock.advance(3600_000);
    t.equal(await fixed.engine.runDueReversals(), 1);
    const after = fixed.journal.get(sale.id)!;
    t.equal(after.state, 'reversed');
    t.equal(after.finalCode, 'CANCELLED', 'QUERY now tells the real reason');
    t.match(registerLine(after), /^FAILED F-HTML-400 CANCELLED \S/);
    t.match(w.sim.entry(sale.outTradeNo), { charged: false, reversed: true, refundedFen: 1234 });
    t.equal(chargedFor(w.sim, 'F-HTML-400').length, 0);
  });
});

for (const { kind, label, message } of [
  { kind: 'truncated', label: 'truncated XML', message: /malformed XML/ },
  { kind: 'garbage', label: 'garbage XML', message: /malformed XML|not an XML document|root element/ },
  { kind: 'dtd', label: 'XML with a DTD/entities', message: /DTD or entity declaration refused/ },
] as const) {
  t.test(`${label} -> unknown (BAD_XML), never parsed as an answer; resolved by orderquery as PAID, charged once`, async (t) => {
    await withWorld(t, {}, async (w) => {
      const ref = `F-XML-${kind.toUpperCase()}`;
      const { sale } = await sell(w, { outcome: 'paid', faults: { micropay: [{ kind }] } }, { ref });
      t.equal(sale.state, 'paid');
      t.match(events(w, sale, 'micropay_answer'), [{ result: 'unknown', failure: 'BAD_XML', message }]);
      t.notOk(JSON.stringify(w.journal.events(sale.id)).includes('/etc/hostname'), 'no entity was resolved or kept');
      t.equal(registerLine(sale), `PAID ${ref} ${sale.outTradeNo} ${sale.transactionId}`);
      t.match(w.sim.entry(sale.outTradeNo), { charged: true, micropayCount: 1, queryCount: 1, reverseCount: 0 });
      t.equal(chargedFor(w.sim, ref).length, 1);
    });
  });
}

t.test('forged signature on every answer -> never PAID: reversed (REVERSED), the charge given back', async (t) => {
  await withWorld(t, {}, async (w) => {
    const { sale } = await sell(
      w,
      { outcome: 'paid', faults: { micropay: [{ kind: 'forge_signature' }], orderquery: [{ kind: 'forge_signature', times: 100 }] } },
      { ref: 'F-FORGED' },
    );
    t.equal(sale.state, 'reversed');
    t.equal(sale.finalCode, 'REVERSED');
    t.equal(sale.transactionId, null, 'no transaction id was taken from a forged answer');
    const answers = [...events(w, sale, 'micropay_answer'), ...events(w, sale, 'orderquery_answer')];
    t.ok(answers.length >= 2);
    t.ok(answers.every((a) => a.failure === 'BAD_SIGNATURE'), 'every forged answer was unknown');
    t.match(registerLine(sale), /^FAILED F-FORGED REVERSED \S/);
    t.match(w.sim.entry(sale.outTradeNo), { everCharged: true, charged: false, reversed: true, refundedFen: 1234, micropayCount: 1 });
    t.equal(chargedFor(w.sim, 'F-FORGED').length, 0);
  });
});

t.test('wrong appid echo on every answer -> never PAID: reversed (REVERSED), the charge given back', async (t) => {
  // The simulator cannot echo another appid by itself: a proxy rewrites its micropay and orderquery
  // answers and signs them correctly again, so only the echo check can catch them.
  const clock = new VirtualClock();
  const sim = await GatewaySimulator.start({ ...MERCHANT, clock, pki });
  t.teardown(() => sim.close());
  const proxy = await rewritingProxy(sim, (path, fields) => (path === '/secapi/pay/reverse' ? null : { ...fields, appid: 'wx00000000000000ff' }));
  t.teardown(() => proxy.close());
  await withWorld(t, { clock, simulator: sim, client: { apiBase: proxy.origin } }, async (w) => {
    const { sale } = await sell(w, { outcome: 'paid' }, { ref: 'F-APPID' });
    t.equal(sale.state, 'reversed');
    t.equal(sale.finalCode, 'REVERSED');
    t.equal(sale.transactionId, null);
    const answers = [...events(w, sale, 'micropay_answer'), ...events(w, sale, 'orderquery_answer')];
    t.ok(answers.length >= 2);
    t.ok(answers.every((a) => a.failure === 'ECHO_MISMATCH' && /appid/.test(String(a.message))), 'every answer refused for its appid');
    t.ok(proxy.rewritten >= answers.length, 'the answers really were rewritten');
    t.match(registerLine(sale), /^FAILED F-APPID REVERSED \S/);
    t.match(w.sim.entry(sale.outTradeNo), { everCharged: true, charged: false, reversed: true, refundedFen: 1234, micropayCount: 1 });
    t.equal(chargedFor(w.sim, 'F-APPID').length, 0);
  });
});

t.test('wrong mch_id echo on every answer -> never PAID: reversed (REVERSED), the charge given back', async (t) => {
  await withWorld(t, {}, async (w) => {
    const { sale } = await sell(
      w,
      { outcome: 'paid', faults: { micropay: [{ kind: 'wrong_mch_id' }], orderquery: [{ kind: 'wrong_mch_id', times: 100 }] } },
      { ref: 'F-MCHID' },
    );
    t.equal(sale.state, 'reversed');
    t.equal(sale.finalCode, 'REVERSED');
    t.equal(sale.transactionId, null);
    const answers = [...events(w, sale, 'micropay_answer'), ...events(w, sale, 'orderquery_answer')];
    t.ok(answers.length >= 2);
    t.ok(answers.every((a) => a.failure === 'ECHO_MISMATCH' && /mch_id/.test(String(a.message))), 'every answer refused for its mch_id');
    t.match(registerLine(sale), /^FAILED F-MCHID REVERSED \S/);
    t.match(w.sim.entry(sale.outTradeNo), { everCharged: true, charged: false, reversed: true, refundedFen: 1234, micropayCount: 1 });
    t.equal(chargedFor(w.sim, 'F-MCHID').length, 0);
  });
});
