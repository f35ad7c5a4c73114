import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { writeBoxFiles } from '../../src/backend/pki.js';
import { createBackendWorld, freshCode, MERCHANT, type BackendWorld, type Box } from './helpers.js';

/**
 * The box's engine, unchanged, with a BackendGateway: the sale goes box -> backend (mutual TLS) -> the
 * simulator (the merchant's key and certificate) and back, and the money is checked in the simulator's ledger.
 */

/** A technician's refund, worked on until WeChat Pay answers (the virtual clock would end a wait at once). */
async function refundSale(box: Box, ref: string, amountFen: number, rid: string) {
  const requested = box.refunds.request({ ref, amountFen, rid, source: 'technician' });
  if (requested.kind !== 'created') throw new Error(`refund not recorded: ${requested.kind}`);
  return box.refunds.drive(requested.refund.id);
}

async function paySale(box: Box, ref: string, amountFen: number, code: string, onProgress?: (p: string) => void) {
  const started = box.engine.startSale(ref, amountFen);
  if (started.kind !== 'open') throw new Error(`sale not opened: ${started.kind}`);
  return box.engine.pay(started.sale.id, code, onProgress ? { onProgress } : {});
}

let world: BackendWorld;
t.beforeEach(async () => {
  world = await createBackendWorld();
});
t.afterEach(async () => {
  await world.close();
});

t.test('paid through the backend: the ledger charged once, the backend journal holds the call', async (t) => {
  const box = await world.box();
  const sale = await paySale(box, 'R1', 1234, freshCode());
  t.equal(sale.state, 'paid');
  t.match(sale.transactionId, /^\d{28}$/);
  const entry = world.sim.entry(sale.outTradeNo);
  t.ok(entry?.charged, 'charged at WeChat Pay');
  t.equal(entry?.totalFee, 1234);
  t.equal(entry?.micropayCount, 1, 'one micropay');
  const calls = await world.store.calls({ deviceId: box.deviceId });
  t.same(
    calls.map((c) => [c.call, c.outTradeNo, c.outcome]),
    [['micropay', sale.outTradeNo, 'success']],
  );
  const record = await world.store.box(box.deviceId);
  t.equal(record?.calls, 1);
  t.equal(record?.errors, 0);
  t.ok(record?.lastSeenAt, 'last seen recorded');
});

t.test('password wait: USERPAYING, queried through the backend until the payer confirms', async (t) => {
  const box = await world.box();
  const code = freshCode();
  world.sim.setScenario(code, { outcome: 'userpaying', confirmAfterMs: 12_000 });
  const progress: string[] = [];
  const sale = await paySale(box, 'R2', 500, code, (p) => progress.push(p));
  t.equal(sale.state, 'paid');
  t.same(progress, ['scanned', 'password']);
  t.ok(world.sim.entry(sale.outTradeNo)?.charged);
  const calls = (await world.store.calls()).map((c) => `${c.call}:${c.outcome}`);
  t.equal(calls[0], 'micropay:business');
  t.ok(calls.slice(1).every((c) => c === 'orderquery:success'), 'then orderqueries');
  t.ok(calls.length >= 3);
});

t.test('the payer never confirms: the password wait ends, the order is reversed through the backend', async (t) => {
  const box = await world.box();
  const code = freshCode();
  world.sim.setScenario(code, { outcome: 'userpaying' });
  const sale = await paySale(box, 'R3', 800, code);
  t.equal(sale.state, 'reversed');
  t.equal(sale.finalCode, 'TIMEOUT_REVERSED');
  const entry = world.sim.entry(sale.outTradeNo);
  t.ok(entry?.reversed, 'reversed at WeChat Pay');
  t.notOk(entry?.charged, 'nothing kept');
  const calls = await world.store.calls();
  t.equal(calls.at(-1)?.call, 'reverse');
  t.equal(calls.at(-1)?.outcome, 'success');
});

t.test('the backend answers too late for the box: unknown, queried and settled by the ledger', async (t) => {
  const box = await world.box(undefined, { gateway: { timeouts: { micropay: 300 } } });
  const code = freshCode();
  // The simulator charges, then answers after 1.5 s: the backend waits (its timeout is 3 s), the box does not.
  world.sim.setScenario(code, { outcome: 'paid', faults: { micropay: [{ kind: 'delay', ms: 1500 }] } });
  const sale = await paySale(box, 'R4', 300, code);
  const events = box.journal.events(sale.id).map((e) => e.kind);
  t.ok(events.includes('micropay_answer'));
  const micropay = box.journal.events(sale.id).find((e) => e.kind === 'micropay_answer');
  t.match(micropay?.detail, /"failure":"TIMEOUT"/, 'the box saw a timeout');
  t.notMatch(micropay?.detail, /unsent/, 'never called unsent: the micropay had reached the backend');
  const entry = world.sim.entry(sale.outTradeNo);
  // Whatever the engine decided, the money agrees with what the register is told.
  t.equal(sale.state === 'paid', entry?.charged === true, `register told ${sale.state}, ledger charged=${entry?.charged}`);
  t.ok(['paid', 'reversed'].includes(sale.state));
});

t.test('a micropay the backend refuses by policy fails at once: nothing upstream, nothing to reverse', async (t) => {
  const box = await world.box(undefined, { policy: { maxAmountFen: 1000 } });
  const before = world.sim.requests().length;
  const sale = await paySale(box, 'R5', 1001, freshCode());
  t.equal(sale.state, 'failed');
  t.equal(sale.finalCode, 'TRADE_ERROR');
  t.equal(world.sim.requests().length, before, 'nothing reached WeChat Pay');
  t.equal(world.sim.entry(sale.outTradeNo), undefined);
  const events = box.journal.events(sale.id).map((e) => e.kind);
  t.notOk(events.includes('reverse_started'), 'no reversal');
  const answer = box.journal.events(sale.id).find((e) => e.kind === 'micropay_answer');
  t.match(answer?.detail, /AMOUNT_LIMIT/);
  const calls = await world.store.calls();
  t.same(
    calls.map((c) => [c.call, c.outcome, c.code]),
    [['micropay', 'refused', 'AMOUNT_LIMIT']],
  );
  t.equal((await world.store.box(box.deviceId))?.errors, 1);
});

t.test('a backend that cannot record the call sends nothing: the box ends the sale OFFLINE at once, nothing to reverse', async (t) => {
  const box = await world.box('SHOPNR');
  const before = world.sim.requests().length;
  // The backend's journal refuses writes (a full disk, a database with no writable host).
  const startCall = world.store.startCall.bind(world.store);
  world.store.startCall = async () => {
    throw new Error('SQLITE_FULL: database or disk is full');
  };
  t.teardown(() => {
    world.store.startCall = startCall;
  });
  const sale = await paySale(box, 'R-NR', 500, freshCode());
  t.equal(sale.state, 'failed');
  t.equal(sale.finalCode, 'OFFLINE', 'the register is told OFFLINE, not a WeChat Pay error');
  t.equal(sale.finalText, "Merchant's backend cannot take sales now: nothing charged, take another payment method", 'the text says what happened');
  t.equal(world.sim.requests().length, before, 'nothing reached WeChat Pay');
  const events = box.journal.events(sale.id).map((e) => e.kind);
  t.notOk(events.includes('reverse_started'), 'nothing to reverse');
  const answer = JSON.parse(box.journal.events(sale.id).find((e) => e.kind === 'micropay_answer')!.detail!) as Record<string, string>;
  t.match(answer, { refusal: 'BACKEND_UNAVAILABLE', unsent: /answered that it cannot take sales now \(BACKEND_UNAVAILABLE\): nothing was sent to WeChat Pay/ }, 'the journal says what happened');
  const said = box.log.lines.filter((l) => /R-NR/.test(l) && /^<4>/.test(l));
  t.match(
    said,
    [/^<4>micropay not made: the merchant's backend answered that it cannot take sales now \(BACKEND_UNAVAILABLE\): nothing was sent to WeChat Pay, nothing charged, nothing to reverse .*result=OFFLINE/],
    "the box's log says the backend cannot take sales now",
  );
  t.notOk(box.log.lines.some((l) => /never left the box/.test(l)), 'not that it never left the box');
});

t.test('another box\'s orders are refused, and nothing reaches WeChat Pay', async (t) => {
  const mine = await world.box('SHOPA1');
  const thief = await world.box('SHOPB2');
  const sale = await paySale(mine, 'R6', 700, freshCode());
  t.equal(sale.state, 'paid');
  const before = world.sim.requests().length;

  const reverse = await thief.gateway.reverse({ outTradeNo: sale.outTradeNo });
  t.equal(reverse.kind, 'unknown');
  t.match(reverse.kind === 'unknown' && reverse.message, /NOT_YOUR_ORDER/);
  const query = await thief.gateway.orderquery({ outTradeNo: sale.outTradeNo });
  t.equal(query.kind, 'unknown');
  const refund = await thief.gateway.refund({ outTradeNo: sale.outTradeNo, outRefundNo: `SHOPB2R1`, totalFee: 700, refundFee: 700 });
  t.equal(refund.kind, 'business', 'a refused refund is final: nothing of it reached WeChat Pay');
  t.equal(refund.kind === 'business' && refund.fields.backend_refusal, 'NOT_YOUR_ORDER');
  const micropay = await thief.gateway.micropay({ outTradeNo: 'SHOPA1XXXX99999999', totalFee: 1, authCode: freshCode(), body: 'x' });
  t.equal(micropay.kind, 'business');
  t.equal(micropay.kind === 'business' && micropay.errCode, 'NOAUTH');
  t.equal(micropay.kind === 'business' && micropay.fields.backend_refusal, 'NOT_YOUR_ORDER');
  const spoofed = await thief.gateway.micropay({ outTradeNo: 'SHOPB2XXXX00000001', totalFee: 1, authCode: freshCode(), body: 'x', deviceInfo: 'SHOPA1' });
  t.equal(spoofed.kind === 'business' && spoofed.fields.backend_refusal, 'NOT_YOUR_ORDER', 'another box\'s device_info');

  t.equal(world.sim.requests().length, before, 'nothing reached WeChat Pay');
  t.ok(world.sim.entry(sale.outTradeNo)?.charged, 'the sale stays paid');
  const refused = await world.store.calls({ deviceId: 'SHOPB2' });
  t.same(
    refused.map((c) => [c.call, c.outcome, c.code]),
    [
      ['reverse', 'refused', 'NOT_YOUR_ORDER'],
      ['orderquery', 'refused', 'NOT_YOUR_ORDER'],
      ['refund', 'refused', 'NOT_YOUR_ORDER'],
      ['micropay', 'refused', 'NOT_YOUR_ORDER'],
      ['micropay', 'refused', 'NOT_YOUR_ORDER'],
    ],
  );
});

t.test('a refund through the backend, and refunds switched off for a box', async (t) => {
  const box = await world.box();
  const sale = await paySale(box, 'R7', 900, freshCode());
  t.equal(sale.state, 'paid');
  const refund = await refundSale(box, 'R7', 400, 'T1');
  t.equal(refund.state, 'accepted');
  t.equal(world.sim.refunds().length, 1, 'refunded at WeChat Pay');
  t.equal(world.sim.refunds()[0]?.refundFee, 400);

  const other = await world.box('NOREFUND', { policy: { refunds: 'off' } });
  const paid = await paySale(other, 'R8', 900, freshCode());
  const before = world.sim.requests().length;
  const outcome = await other.gateway.refund({ outTradeNo: paid.outTradeNo, outRefundNo: `${paid.outTradeNo}R`, totalFee: 900, refundFee: 100 });
  t.equal(outcome.kind, 'business', 'final: refused by the backend, nothing sent');
  t.equal(outcome.kind === 'business' && outcome.errCode, 'REFUNDS_OFF');
  t.equal(outcome.kind === 'business' && outcome.fields.backend_refusal, 'REFUNDS_OFF');
  t.equal(world.sim.requests().length, before);
});

t.test('the API key is in no box-side log, journal or file; no full payment code in any log', async (t) => {
  const box = await world.box();
  const code = freshCode();
  const sale = await paySale(box, 'R9', 100, code);
  t.equal(sale.state, 'paid');
  t.equal((await refundSale(box, 'R9', 100, 'T9')).state, 'accepted');
  const userpaying = freshCode();
  world.sim.setScenario(userpaying, { outcome: 'userpaying' });
  await paySale(box, 'R10', 100, userpaying);
  const files = writeBoxFiles(join(world.dir, 'box-etc'), box.certificate);

  const boxSide = [box.log.lines.join('\n')];
  for (const name of readdirSync(world.dir)) {
    if (name.startsWith(box.deviceId)) boxSide.push(readFileSync(join(world.dir, name)).toString('latin1'));
  }
  for (const path of Object.values(files)) boxSide.push(readFileSync(path, 'utf8'));
  t.ok(boxSide.length >= 5, 'log, journal files and the three certificate files');
  for (const text of boxSide) t.notOk(text.includes(MERCHANT.apiKey), 'no API key');
  t.ok(box.log.lines.some((line) => line.includes('backend request')), 'the box logged its calls');

  for (const lines of [box.log.lines, world.backendLog.lines]) {
    for (const line of lines) {
      t.notOk(line.includes(code) || line.includes(userpaying), `no full payment code: ${line.slice(0, 80)}`);
      t.notOk(line.includes(MERCHANT.apiKey), 'no API key in the backend log either');
    }
  }
  t.ok(world.backendLog.lines.some((line) => line.includes('backend: forwarded')));
});

t.test('the backend journal records every call that reached WeChat Pay, with its outcome', async (t) => {
  const a = await world.box('BOXA');
  const b = await world.box('BOXB');
  const userpaying = freshCode();
  world.sim.setScenario(userpaying, { outcome: 'userpaying', confirmAfterMs: 6000 });
  const declined = freshCode();
  world.sim.setScenario(declined, { outcome: 'NOTENOUGH' });
  await paySale(a, 'R1', 100, freshCode());
  await paySale(b, 'R1', 200, userpaying);
  await paySale(a, 'R2', 300, declined);
  const upstream = world.sim.requests().filter((r) => r.call !== 'unknown');
  const calls = await world.store.calls();
  t.equal(calls.length, upstream.length, 'one record per upstream request');
  t.same(
    calls.map((c) => [c.call, c.outTradeNo]),
    upstream.map((r) => [r.call, r.outTradeNo]),
    'same calls, same orders, same order',
  );
  t.ok(calls.every((c) => c.outcome !== 'sent' && c.ms !== null), 'every outcome recorded');
  t.same(
    calls.filter((c) => c.outcome === 'business').map((c) => c.code),
    ['USERPAYING', 'NOTENOUGH'],
  );
  const boxes = await world.store.boxes();
  t.same(
    boxes.map((x) => [x.deviceId, x.calls, x.errors]),
    [
      ['BOXA', calls.filter((c) => c.deviceId === 'BOXA').length, 0],
      ['BOXB', calls.filter((c) => c.deviceId === 'BOXB').length, 0],
    ],
  );
});

t.test('downloadbill through the backend, and bills switched off', async (t) => {
  const box = await world.box();
  // The virtual clock's day is 2026-11-29; the 28th's bill is out from 09:00 on the 29th, China time.
  const outcome = await box.gateway.downloadbill({ billDate: '20261128' });
  t.ok(outcome.kind === 'no_bill' || outcome.kind === 'bill', `a bill outcome: ${outcome.kind}`);
  t.same((await world.store.calls()).map((c) => [c.call, c.outcome]), [['downloadbill', outcome.kind]]);
  const off = await createBackendWorld({ policy: { bills: 'off' } });
  t.teardown(() => off.close());
  const other = await off.box();
  const refused = await other.gateway.downloadbill({ billDate: '20261128' });
  t.equal(refused.kind, 'unknown');
  t.match(refused.kind === 'unknown' && refused.message, /BILLS_OFF/);
  t.equal(off.sim.requests().length, 0);
});
