import t, { type Test } from 'tap';
import { VirtualClock } from '../../src/clock.js';
import type { Sale } from '../../src/journal/journal.js';
import { verdictOf } from '../../src/payment/engine.js';
import type { Scenario } from '../../src/simulator/gateway.js';
import { sell } from '../helpers/faults.js';
import { createWorld, freshCode, type World, type WorldOptions } from '../helpers/world.js';

/**
 * Every simulator scenario through the real engine, a real journal file and real HTTPS. Each test
 * asserts the three records that must agree: the sale's journal row and events, and the gateway's ledger.
 */

async function withWorld(t: Test, options: WorldOptions, body: (w: World) => Promise<void>): Promise<void> {
  const world = await createWorld(options);
  t.teardown(() => world.close());
  await body(world);
}

function eventKinds(w: World, sale: Sale): string[] {
  return w.journal.events(sale.id).map((e) => e.kind);
}

const byCall = (w: World, call: string, outTradeNo: string) =>
  w.sim.requests().filter((r) => r.call === call && r.outTradeNo === outTradeNo);

t.test('paid at once: one micropay, PAID with the transaction id, charged once', async (t) => {
  await withWorld(t, {}, async (w) => {
    const { sale, progress } = await sell(w, { outcome: 'paid' });
    t.equal(sale.state, 'paid');
    t.match(sale.transactionId, /^\d{28}$/);
    t.same(verdictOf(sale), { kind: 'paid', ref: sale.ref, outTradeNo: sale.outTradeNo, transactionId: sale.transactionId });
    t.same(eventKinds(w, sale), ['created', 'micropay_sent', 'micropay_answer']);
    const entry = w.sim.entry(sale.outTradeNo)!;
    t.equal(entry.charged, true);
    t.equal(entry.totalFee, 1234);
    t.equal(entry.transactionId, sale.transactionId);
    t.equal(entry.attach, sale.ref, 'the register REF travels as attach for reconciliation');
    t.equal(entry.micropayCount, 1);
    t.equal(entry.queryCount + entry.reverseCount, 0);
    t.same(progress, ['scanned']);
    t.match(sale.codeMasked, /^13\*{12}\d{4}$/);
  });
});

t.test('MD5 signing works end to end as well', async (t) => {
  await withWorld(t, { signType: 'MD5' }, async (w) => {
    const { sale } = await sell(w, { outcome: 'paid' });
    t.equal(sale.state, 'paid');
    t.equal(w.sim.entry(sale.outTradeNo)!.charged, true);
  });
});

t.test('USERPAYING then confirmed after 12 s: queried every 5 s, then PAID', async (t) => {
  await withWorld(t, {}, async (w) => {
    const { sale, progress } = await sell(w, { outcome: 'userpaying', confirmAfterMs: 12000 });
    t.equal(sale.state, 'paid');
    t.same(progress, ['scanned', 'password']);
    const entry = w.sim.entry(sale.outTradeNo)!;
    t.equal(entry.charged, true);
    t.equal(entry.reverseCount, 0);
    t.equal(entry.queryCount, 3, 'queries at 5, 10, 15 s; confirmed at 12 s');
    const times = byCall(w, 'orderquery', sale.outTradeNo).map((r) => r.at - sale.submittedAt!);
    t.same(times, [5000, 10000, 15000]);
  });
});

t.test('USERPAYING never confirmed: six queries over 30 s, then reversed as TIMEOUT_REVERSED', async (t) => {
  await withWorld(t, {}, async (w) => {
    const { sale } = await sell(w, { outcome: 'userpaying' });
    t.equal(sale.state, 'reversed');
    t.same(verdictOf(sale), { kind: 'failed', ref: sale.ref, code: 'TIMEOUT_REVERSED', text: sale.finalText });
    const entry = w.sim.entry(sale.outTradeNo)!;
    t.equal(entry.state, 'REVOKED');
    t.equal(entry.charged, false);
    t.equal(entry.everCharged, false);
    t.equal(entry.queryCount, 6);
    t.equal(entry.reverseCount, 1);
    const [micropay] = byCall(w, 'micropay', sale.outTradeNo);
    const [reverse] = byCall(w, 'reverse', sale.outTradeNo);
    t.ok(reverse!.at - micropay!.at >= 30000, 'reverse after the 30 s password wait');
    t.ok(reverse!.tls.authorized, 'reverse presented the merchant certificate');
    t.same(eventKinds(w, sale).slice(-2), ['reverse_started', 'reverse_answer']);
  });
});

t.test('the payer cancels in WeChat (PAYERROR): reversed, nothing charged', async (t) => {
  await withWorld(t, {}, async (w) => {
    const { sale } = await sell(w, { outcome: 'userpaying', cancelAfterMs: 7000 });
    t.equal(sale.state, 'reversed');
    t.equal(sale.finalCode, 'REVERSED');
    const entry = w.sim.entry(sale.outTradeNo)!;
    t.equal(entry.charged, false);
    t.equal(entry.reversed, true);
    const [micropay] = byCall(w, 'micropay', sale.outTradeNo);
    const [reverse] = byCall(w, 'reverse', sale.outTradeNo);
    t.ok(reverse!.at - micropay!.at >= 15000, 'WeChat Pay rule: no reverse within 15 s of the order');
  });
});

for (const errCode of ['NOTENOUGH', 'AUTHCODEEXPIRE', 'AUTH_CODE_INVALID', 'NOTSUPORTCARD', 'TRADE_ERROR'] as const) {
  t.test(`${errCode}: a final failure shown plainly, nothing charged, no query or reverse`, async (t) => {
    await withWorld(t, {}, async (w) => {
      const { sale } = await sell(w, { outcome: errCode });
      t.equal(sale.state, 'failed');
      t.equal(sale.finalCode, errCode);
      t.ok(sale.finalText && sale.finalText.length > 5, 'a text a cashier can act on');
      const entry = w.sim.entry(sale.outTradeNo)!;
      t.equal(entry.charged, false);
      t.equal(entry.queryCount + entry.reverseCount, 0);
    });
  });
}

t.test('SYSTEMERROR although paid: queried at once and PAID, not charged twice', async (t) => {
  await withWorld(t, {}, async (w) => {
    const { sale } = await sell(w, { outcome: 'paid', faults: { micropay: [{ kind: 'system_error' }] } });
    t.equal(sale.state, 'paid');
    const entry = w.sim.entry(sale.outTradeNo)!;
    t.equal(entry.micropayCount, 1, 'micropay is never re-sent');
    t.equal(entry.queryCount, 1);
    t.equal(entry.charged, true);
    t.equal(sale.transactionId, entry.transactionId);
  });
});

t.test('BANKERROR although paid: resolved by query as PAID', async (t) => {
  await withWorld(t, {}, async (w) => {
    const { sale } = await sell(w, { outcome: 'BANKERROR' });
    t.equal(sale.state, 'paid');
    t.equal(w.sim.entry(sale.outTradeNo)!.micropayCount, 1);
  });
});

t.test('a slow answer within the timeout is still PAID', async (t) => {
  await withWorld(t, {}, async (w) => {
    const { sale } = await sell(w, { outcome: 'paid', faults: { micropay: [{ kind: 'delay', ms: 400 }] } });
    t.equal(sale.state, 'paid');
    t.equal(w.sim.entry(sale.outTradeNo)!.queryCount, 0);
  });
});

t.test('an answer slower than the micropay timeout: unknown, resolved by query as PAID', async (t) => {
  await withWorld(t, { client: { timeouts: { micropay: 300, orderquery: 3000, reverse: 3000 } } }, async (w) => {
    const { sale } = await sell(w, { outcome: 'paid', faults: { micropay: [{ kind: 'hang' }] } });
    t.equal(sale.state, 'paid');
    const entry = w.sim.entry(sale.outTradeNo)!;
    t.equal(entry.micropayCount, 1);
    t.equal(entry.charged, true);
    t.match(w.journal.events(sale.id).find((e) => e.kind === 'micropay_answer')?.detail, /TIMEOUT/);
  });
});

t.test('connection dropped after charging: resolved by query as PAID', async (t) => {
  await withWorld(t, {}, async (w) => {
    const { sale } = await sell(w, { outcome: 'paid', faults: { micropay: [{ kind: 'drop_after' }] } });
    t.equal(sale.state, 'paid');
    t.equal(w.sim.entry(sale.outTradeNo)!.charged, true);
  });
});

t.test('connection dropped before charging: queried, then reversed; nothing charged', async (t) => {
  await withWorld(t, {}, async (w) => {
    const { sale } = await sell(w, { outcome: 'paid', faults: { micropay: [{ kind: 'drop_before' }] } });
    t.equal(sale.state, 'reversed');
    t.equal(sale.finalCode, 'REVERSED');
    t.equal(w.sim.entry(sale.outTradeNo), undefined, 'the gateway never created the order');
    const queries = w.sim.requests().filter((r) => r.call === 'orderquery' && r.outTradeNo === sale.outTradeNo);
    t.ok(queries.length >= 1);
    t.equal(w.sim.ledger().filter((e) => e.charged).length, 0);
  });
});

t.test('recall=Y twice: reverse is called again until confirmed', async (t) => {
  await withWorld(t, {}, async (w) => {
    const { sale } = await sell(w, { outcome: 'userpaying', recallTimes: 2 });
    t.equal(sale.state, 'reversed');
    t.equal(sale.finalCode, 'TIMEOUT_REVERSED');
    t.equal(sale.reverseAttempts, 3);
    t.equal(w.sim.entry(sale.outTradeNo)!.reverseCount, 3);
    t.equal(w.sim.entry(sale.outTradeNo)!.reversed, true);
  });
});

t.test('a forged signature is never PAID: query resolves it, and if every answer is forged it is reversed', async (t) => {
  await withWorld(t, {}, async (w) => {
    const once = await sell(w, { outcome: 'paid', faults: { micropay: [{ kind: 'forge_signature' }] } });
    t.equal(once.sale.state, 'paid', 'the correctly signed query answer decides');
    t.equal(w.sim.entry(once.sale.outTradeNo)!.queryCount, 1);

    const always = await sell(w, {
      outcome: 'paid',
      faults: { micropay: [{ kind: 'forge_signature' }], orderquery: [{ kind: 'forge_signature', times: 100 }] },
    });
    t.equal(always.sale.state, 'reversed');
    const entry = w.sim.entry(always.sale.outTradeNo)!;
    t.equal(entry.everCharged, true);
    t.equal(entry.charged, false, 'the money went back');
    t.equal(entry.refundedFen, 1234);
  });
});

t.test('a wrong mch_id echo is not trusted', async (t) => {
  await withWorld(t, {}, async (w) => {
    const { sale } = await sell(w, {
      outcome: 'paid',
      faults: { micropay: [{ kind: 'wrong_mch_id' }], orderquery: [{ kind: 'wrong_mch_id', times: 100 }] },
    });
    t.equal(sale.state, 'reversed');
    t.equal(w.sim.entry(sale.outTradeNo)!.charged, false);
  });
});

t.test('return_code=FAIL and HTTP 5xx on micropay: unknown, queried, reversed; nothing charged', async (t) => {
  await withWorld(t, {}, async (w) => {
    for (const fault of [{ kind: 'return_fail' as const }, { kind: 'http_500' as const }]) {
      const { sale } = await sell(w, { outcome: 'paid', faults: { micropay: [fault] } });
      t.equal(sale.state, 'reversed', fault.kind);
      t.equal(w.sim.ledger().filter((e) => e.outTradeNo === sale.outTradeNo && e.charged).length, 0);
    }
  });
});

t.test('garbage, truncated and DTD answers are unknown, never paid or final', async (t) => {
  await withWorld(t, {}, async (w) => {
    for (const kind of ['garbage', 'truncated', 'dtd'] as const) {
      const { sale } = await sell(w, { outcome: 'paid', faults: { micropay: [{ kind }] } });
      t.equal(sale.state, 'paid', `${kind}: resolved by a clean query`);
      t.match(w.journal.events(sale.id).find((e) => e.kind === 'micropay_answer')?.detail, /BAD_XML/);
    }
  });
});

t.test('the cashier cancels during the password wait: reversed as CANCELLED', async (t) => {
  await withWorld(t, {}, async (w) => {
    const { sale } = await sell(w, { outcome: 'userpaying', confirmAfterMs: 60000 }, { cancelAfter: 'password' });
    t.equal(sale.state, 'reversed');
    t.equal(sale.finalCode, 'CANCELLED');
    const entry = w.sim.entry(sale.outTradeNo)!;
    t.equal(entry.state, 'REVOKED');
    t.equal(entry.charged, false);
  });
});

t.test('the cashier cancels while micropay is in flight and it charges: the charge is reversed', async (t) => {
  await withWorld(t, {}, async (w) => {
    const { sale } = await sell(w, { outcome: 'paid' }, { cancelAfter: 'scanned' });
    t.equal(sale.state, 'reversed');
    t.equal(sale.finalCode, 'CANCELLED');
    const entry = w.sim.entry(sale.outTradeNo)!;
    t.equal(entry.everCharged, true);
    t.equal(entry.charged, false);
    t.equal(entry.refundedFen, 1234);
  });
});

t.test('reverse without a merchant certificate: HTML 400 -> REVERSE_PENDING, error logged, the queue keeps trying', async (t) => {
  const clock = new VirtualClock();
  await withWorld(t, { clock, client: { certificate: null } }, async (w) => {
    const { sale } = await sell(w, { outcome: 'userpaying' });
    t.equal(sale.state, 'reversing');
    t.same(verdictOf(sale), { kind: 'failed', ref: sale.ref, code: 'REVERSE_PENDING', text: sale.finalText });
    t.ok(w.log.lines.some((l) => l.startsWith('<3>') && /CERT_REJECTED/.test(l)), 'error-level line names the cause');
    t.equal(w.sim.entry(sale.outTradeNo)!.reversed, false);
    t.ok(w.sim.requests().some((r) => r.call === 'reverse' && r.status === 400));

    // The technician installs the certificate; the box restarts and the queue finishes the job.
    await w.restart();
    // A REVERSE_PENDING sale does not block a new sale: it was already answered.
    t.equal(w.engine.startSale('NEXT1', 100).kind, 'open');
    const next = w.journal.latestByRef('NEXT1')!;
    w.engine.failOpen(next.id, 'CANCELLED');
    clock.advance(3600_000);
    t.equal(await w.engine.runDueReversals(), 1, 'the queue tries again once due');
    const still = w.journal.get(sale.id)!;
    t.equal(still.state, 'reversing', 'without a certificate it stays pending');
    t.equal(still.finalCode, 'REVERSE_PENDING');
    t.equal(still.reverseAttempts, 4);
  });
});

t.test('REVERSE_PENDING is retried with back-off across a restart until confirmed', async (t) => {
  const clock = new VirtualClock();
  const world = await createWorld({ clock, client: { certificate: null } });
  t.teardown(() => world.close());
  const { sale } = await sell(world, { outcome: 'userpaying' });
  t.equal(sale.finalCode, 'REVERSE_PENDING');
  const attemptsBefore = world.journal.get(sale.id)!.reverseAttempts;
  t.equal(attemptsBefore, 3, 'three attempts while the register waited');
  t.ok(world.journal.get(sale.id)!.nextReverseAt! > clock.now(), 'next attempt scheduled with back-off');

  // Restart with the certificate in place (the options are fixed per world, so build a second world on the same file).
  const fixed = await createWorld({ clock, dbPath: world.dbPath, simulator: world.sim });
  t.teardown(() => fixed.close());
  t.equal(await fixed.engine.runDueReversals(), 0, 'not due yet: back-off is kept across the restart');
  clock.advance(60_000);
  t.equal(await fixed.engine.runDueReversals(), 1);
  const after = fixed.journal.get(sale.id)!;
  t.equal(after.state, 'reversed');
  t.equal(after.finalCode, 'TIMEOUT_REVERSED', 'once confirmed, QUERY REF tells the real reason');
  t.equal(world.sim.entry(sale.outTradeNo)!.reversed, true);
});

t.test('a REF whose earlier attempt may still hold money gets no new attempt until that money is given back', async (t) => {
  const clock = new VirtualClock();
  const world = await createWorld({ clock, client: { certificate: null } });
  t.teardown(() => world.close());
  // The payer confirms just after the box gave up waiting, and the reversal cannot go out (no certificate):
  // the payer is charged and only the reversal queue can give it back.
  const { sale } = await sell(world, { outcome: 'userpaying', confirmAfterMs: 30_500 }, { ref: 'R-HELD' });
  t.equal(sale.finalCode, 'REVERSE_PENDING');
  t.equal(world.sim.entry(sale.outTradeNo)!.charged, true, 'the first attempt holds the money');

  const again = world.engine.startSale('R-HELD', 1234);
  t.equal(again.kind, 'held', 'PAY for that REF again: no new attempt');
  if (again.kind === 'held') {
    t.equal(again.sale.id, sale.id);
    t.same(
      { kind: again.verdict.kind, ref: again.verdict.ref, code: again.verdict.kind === 'failed' ? again.verdict.code : null },
      { kind: 'failed', ref: 'R-HELD', code: 'REVERSE_PENDING' },
    );
    t.match(again.verdict.kind === 'failed' ? again.verdict.text : '', /still being given back/);
  }
  t.equal(world.journal.byRef('R-HELD').length, 1, 'nothing new in the journal');
  t.equal(world.sim.ledger().filter((e) => e.attach === 'R-HELD').length, 1, 'nothing new at WeChat Pay');
  t.match(world.log.lines.join('\n'), /<4>PAY refused: an earlier attempt of this REF may still hold/);
  t.equal(world.engine.startSale('R-OTHER', 100).kind, 'open', 'other sales go on');
  world.engine.failOpen(world.journal.latestByRef('R-OTHER')!.id, 'CANCELLED');

  // The certificate is back; the queue gives the money back; now the REF may be tried again.
  const fixed = await createWorld({ clock, dbPath: world.dbPath, simulator: world.sim });
  t.teardown(() => fixed.close());
  clock.advance(3600_000);
  t.equal(await fixed.engine.runDueReversals(), 1);
  t.equal(fixed.journal.get(sale.id)!.state, 'reversed');
  t.equal(world.sim.entry(sale.outTradeNo)!.charged, false, 'given back');
  const retry = await sell(fixed, { outcome: 'paid' }, { ref: 'R-HELD' });
  t.equal(retry.sale.state, 'paid', 'a new attempt once nothing is held');
  t.equal(world.sim.ledger().filter((e) => e.attach === 'R-HELD' && e.charged).length, 1, 'one charge for the REF');
});

t.test('a REF whose reversal WeChat Pay refused for good (REVERSE_EXPIRE) is never charged again', async (t) => {
  const clock = new VirtualClock();
  const world = await createWorld({ clock, client: { certificate: null } });
  t.teardown(() => world.close());
  const { sale } = await sell(world, { outcome: 'userpaying', confirmAfterMs: 30_500 }, { ref: 'R-EXPIRED' });
  t.equal(world.sim.entry(sale.outTradeNo)!.charged, true);
  // The certificate comes back only after WeChat Pay's 7-day reverse window.
  const late = await createWorld({ clock, dbPath: world.dbPath, simulator: world.sim });
  t.teardown(() => late.close());
  clock.advance(8 * 24 * 3600_000);
  t.equal(await late.engine.runDueReversals(), 1);
  const refused = late.journal.get(sale.id)!;
  t.equal(refused.state, 'reverse_failed');
  t.ok(late.sim.requests().some((r) => r.call === 'reverse' && r.status === 200), 'WeChat Pay answered the reverse');

  const again = late.engine.startSale('R-EXPIRED', 1234);
  t.equal(again.kind, 'held');
  if (again.kind === 'held') t.match(again.verdict.kind === 'failed' ? again.verdict.text : '', /refund it in the merchant platform/);
  await late.restart();
  t.equal(late.engine.startSale('R-EXPIRED', 1234).kind, 'held', 'also after a restart');
  t.equal(late.journal.byRef('R-EXPIRED').length, 1);
  t.equal(world.sim.ledger().filter((e) => e.attach === 'R-EXPIRED').length, 1, 'one order, one charge, never a second');
});

t.test('idempotency: the same REF paid once is answered PAID again and charged once, also after a restart', async (t) => {
  await withWorld(t, {}, async (w) => {
    const { sale, code } = await sell(w, { outcome: 'paid' }, { ref: 'R-IDEM-1' });
    const again = w.engine.startSale('R-IDEM-1', 1234);
    t.equal(again.kind, 'paid');
    t.equal(again.sale.id, sale.id);
    await w.restart();
    const afterRestart = w.engine.startSale('R-IDEM-1', 1234);
    t.equal(afterRestart.kind, 'paid');
    t.equal(afterRestart.sale.outTradeNo, sale.outTradeNo);
    t.equal(w.sim.ledger().filter((e) => e.attach === 'R-IDEM-1' && e.everCharged).length, 1);
    t.ok(code);
  });
});

t.test('a REF whose attempt failed gets a new attempt with a new out_trade_no (switch card after NOTENOUGH)', async (t) => {
  await withWorld(t, {}, async (w) => {
    const first = await sell(w, { outcome: 'NOTENOUGH' }, { ref: 'R-RETRY' });
    const second = await sell(w, { outcome: 'paid' }, { ref: 'R-RETRY' });
    t.equal(first.sale.finalCode, 'NOTENOUGH');
    t.equal(second.sale.state, 'paid');
    t.not(second.sale.outTradeNo, first.sale.outTradeNo);
    t.equal(w.sim.ledger().filter((e) => e.attach === 'R-RETRY' && e.everCharged).length, 1);
    t.equal(w.journal.latestByRef('R-RETRY')!.id, second.sale.id);
  });
});

t.test('one sale at a time: a second PAY while one is open is busy', async (t) => {
  await withWorld(t, {}, async (w) => {
    const first = w.engine.startSale('R-A', 100);
    t.equal(first.kind, 'open');
    const second = w.engine.startSale('R-B', 100);
    t.equal(second.kind, 'busy');
    t.equal(second.sale.ref, 'R-A');
    t.equal(w.journal.latestByRef('R-B'), undefined, 'nothing journalled for the refused PAY');
  });
});

t.test('two restarts with the clock set backwards still give fresh out_trade_nos', async (t) => {
  const clock = new VirtualClock(Date.UTC(2026, 10, 29, 12, 0, 0));
  await withWorld(t, { clock }, async (w) => {
    const seen = new Set<string>();
    const one = await sell(w, { outcome: 'paid' });
    seen.add(one.sale.outTradeNo);
    await w.restart({ clock: new VirtualClock(Date.UTC(1970, 0, 1, 0, 0, 10)) });
    const two = await sell(w, { outcome: 'paid' });
    seen.add(two.sale.outTradeNo);
    await w.restart({ clock: new VirtualClock(Date.UTC(2000, 0, 1)) });
    const three = await sell(w, { outcome: 'paid' });
    seen.add(three.sale.outTradeNo);
    t.equal(seen.size, 3);
    for (const s of [one, two, three]) t.equal(w.sim.entry(s.sale.outTradeNo)!.micropayCount, 1);
    t.equal(w.sim.ledger().filter((e) => e.charged).length, 3);
  });
});

t.test('recovery: open sale ends INTERRUPTED with no request; a charged unreported sale is reversed', async (t) => {
  await withWorld(t, {}, async (w) => {
    // An open sale (waiting for a scan) when the power went.
    const open = w.engine.startSale('R-OPEN', 500);
    t.equal(open.kind, 'open');
    const requestsBefore = w.sim.requests().length;
    // A sale whose micropay charged but whose answer never reached the journal: build it by hand.
    w.journal.transition(open.sale.id, 'failed', { finalCode: 'CANCELLED', finalText: 'x' }, { kind: 't', detail: '' });
    const paying = w.engine.startSale('R-PAYING', 700);
    const code = freshCode();
    w.journal.transition(paying.sale.id, 'paying', { codeMasked: '13**', submittedAt: w.clock.now() }, { kind: 'micropay_sent', detail: '' });
    const charged = await w.client.micropay({
      outTradeNo: paying.sale.outTradeNo,
      totalFee: 700,
      authCode: code,
      body: 'x',
      attach: 'R-PAYING',
    });
    t.equal(charged.kind, 'success');
    t.equal(w.sim.requests().length, requestsBefore + 1);

    await w.restart();
    const recovered = await w.engine.recover();
    t.equal(recovered.length, 1);
    const after = w.journal.get(paying.sale.id)!;
    t.equal(after.state, 'reversed');
    t.equal(after.finalCode, 'INTERRUPTED');
    const entry = w.sim.entry(paying.sale.outTradeNo)!;
    t.equal(entry.charged, false);
    t.equal(entry.refundedFen, 700);
    t.same(w.journal.unfinished(), []);
  });
});

t.test('recovery of a sale still open (nothing scanned) sends nothing', async (t) => {
  await withWorld(t, {}, async (w) => {
    const open = w.engine.startSale('R-OPEN2', 500);
    await w.restart();
    const before = w.sim.requests().length;
    await w.engine.recover();
    const after = w.journal.get(open.sale.id)!;
    t.equal(after.state, 'failed');
    t.equal(after.finalCode, 'INTERRUPTED');
    t.equal(w.sim.requests().length, before);
  });
});

t.test('no log line holds a full payment code or the API key', async (t) => {
  await withWorld(t, {}, async (w) => {
    const codes: string[] = [];
    for (const scenario of [{ outcome: 'paid' }, { outcome: 'userpaying', confirmAfterMs: 6000 }, { outcome: 'NOTENOUGH' }] as Scenario[]) {
      const { code } = await sell(w, scenario);
      codes.push(code);
    }
    const text = w.log.lines.join('\n');
    for (const code of codes) t.notOk(text.includes(code), 'code masked');
    t.notOk(text.includes(w.client ? 'a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6' : ''), 'key absent');
    const journalText = JSON.stringify(w.journal.recent(10)) + JSON.stringify(w.journal.recent(10).map((s) => w.journal.events(s.id)));
    for (const code of codes) t.notOk(journalText.includes(code), 'code not journalled');
  });
});

t.test('20 sequential sales reuse one TLS connection for micropay and orderquery', async (t) => {
  await withWorld(t, {}, async (w) => {
    const before = w.sim.connections;
    for (let i = 0; i < 20; i++) {
      const { sale } = await sell(w, i % 4 === 0 ? { outcome: 'userpaying', confirmAfterMs: 4000 } : { outcome: 'paid' });
      t.equal(sale.state, 'paid');
    }
    t.equal(w.client.stats.handshakes, 1, 'the client opened one connection');
    t.equal(w.sim.connections - before, 1, 'the gateway accepted one connection');
    t.comment(`20 sales: ${w.client.stats.requests} requests, ${w.client.stats.handshakes} TLS handshake(s)`);
  });
});

t.test('a technician reverses a paid sale: refunded, journalled, and the REF may be paid again', async (t) => {
  await withWorld(t, {}, async (w) => {
    const { sale } = await sell(w, { outcome: 'paid' }, { ref: 'R-MANUAL' });
    t.equal(sale.state, 'paid');
    const result = await w.engine.manualReverse(sale.outTradeNo);
    t.equal(result.ok, true, result.text);
    t.equal(result.sale!.state, 'reversed');
    t.equal(result.sale!.finalCode, 'REVERSED');
    t.ok(eventKinds(w, sale).includes('manual_reverse'), 'journalled like any other');
    const entry = w.sim.entry(sale.outTradeNo)!;
    t.equal(entry.charged, false);
    t.equal(entry.refundedFen, 1234);
    t.same(verdictOf(result.sale!), { kind: 'failed', ref: 'R-MANUAL', code: 'REVERSED', text: result.sale!.finalText });
    t.equal(w.engine.startSale('R-MANUAL', 1234).kind, 'open', 'a reversed REF is a failed attempt: it may be paid again');

    const again = await w.engine.manualReverse(sale.outTradeNo);
    t.equal(again.ok, true);
    t.equal(again.text, 'already reversed');
    t.equal(w.sim.entry(sale.outTradeNo)!.reverseCount, 1, 'nothing sent for an already reversed sale');
  });
});

t.test('manual reverse refuses what cannot be reversed', async (t) => {
  await withWorld(t, {}, async (w) => {
    const failed = await sell(w, { outcome: 'NOTENOUGH' });
    const refused = await w.engine.manualReverse(failed.sale.outTradeNo);
    t.equal(refused.ok, false);
    t.match(refused.text, /nothing was charged/);
    t.equal(w.sim.entry(failed.sale.outTradeNo)!.reverseCount, 0);
    const unknown = await w.engine.manualReverse('NOSUCHORDER1');
    t.equal(unknown.ok, false);
    t.equal(unknown.sale, null);
    const open = w.engine.startSale('R-OPEN-M', 100);
    const busy = await w.engine.manualReverse(open.sale.outTradeNo);
    t.equal(busy.ok, false);
    t.match(busy.text, /in progress/);
    t.equal(w.journal.get(open.sale.id)!.state, 'open');
  });
});
