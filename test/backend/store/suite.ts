import type { Test } from 'tap';
import type { BackendStore, NewCall, NewRefundCall } from '../../../src/backend/store.js';
import { fleetSuite } from './fleet.js';

/**
 * The store suite: what every BackendStore must do, run against SQLite and PostgreSQL alike
 * (test/backend/store/sqlite.test.ts, postgres.test.ts). `fresh()` gives an empty store; `again(store)` opens a
 * second handle on the same journal (another process's view), closing nothing.
 */
export interface StoreMaker {
  fresh(): Promise<BackendStore>;
  again(store: BackendStore): Promise<BackendStore>;
}

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 5, 4, 0, 0);

function call(deviceId: string, c: NewCall['call'], outTradeNo: string | null, at: number, extra: Partial<NewCall> = {}): NewCall {
  return { deviceId, call: c, outTradeNo, outRefundNo: null, at, ...extra };
}

export function storeSuite(t: Test, make: StoreMaker): void {
  // The fleet's methods (heartbeats, admins, moneyBuckets, attentionCalls).
  fleetSuite(t, make);

  t.test('enrol: a new box, its certificate current, the policy kept', async (t) => {
    const s = await make.fresh();
    t.teardown(() => s.close());
    const r = await s.enrol({ deviceId: 'SHOP1-01', serial: 'aa01', notAfter: T0 + 365 * DAY, at: T0 }, { maxAmountFen: 5000, refunds: 'off' });
    t.ok(r.ok);
    const box = await s.box('SHOP1-01');
    t.match(box, { deviceId: 'SHOP1-01', serial: 'aa01', notAfter: T0 + 365 * DAY, enrolledAt: T0, revokedAt: null, lastSeenAt: null, calls: 0, errors: 0, maxAmountFen: 5000, refunds: 'off' });
    t.same(await s.certificate('aa01'), { serial: 'aa01', deviceId: 'SHOP1-01', issuedAt: T0, notAfter: T0 + 365 * DAY, revokedAt: null });
    t.equal(await s.certificate('ffff'), undefined);
    t.equal(await s.box('SHOP1-02'), undefined);
  });

  t.test('enrol again: the earlier certificate revoked, the policy kept unless given, a revoked box back', async (t) => {
    const s = await make.fresh();
    t.teardown(() => s.close());
    await s.enrol({ deviceId: 'B1', serial: '01', notAfter: T0 + DAY, at: T0 }, { maxAmountFen: 700 });
    t.ok(await s.revoke('B1', T0 + 10));
    t.equal((await s.box('B1'))!.serial, null, 'a revoked box has no current certificate');
    t.equal((await s.box('B1'))!.revokedAt, T0 + 10);
    const r = await s.enrol({ deviceId: 'B1', serial: '02', notAfter: T0 + 2 * DAY, at: T0 + 20 }, { refunds: 'on' });
    t.ok(r.ok);
    t.match(r.ok && r.box, { serial: '02', revokedAt: null, enrolledAt: T0 + 20, maxAmountFen: 700, refunds: 'on' });
    await s.enrol({ deviceId: 'B1', serial: '03', notAfter: T0 + 3 * DAY, at: T0 + 30 }, { maxAmountFen: null });
    t.match(await s.box('B1'), { serial: '03', maxAmountFen: null, refunds: 'on' });
    t.equal((await s.certificate('02'))!.revokedAt, T0 + 30, 'one good certificate per box');
    t.equal((await s.certificate('01'))!.revokedAt, T0 + 10, 'a revocation keeps its time');
  });

  t.test('enrol refuses a device id that is a prefix of another, either way; a serial is never reused', async (t) => {
    const s = await make.fresh();
    t.teardown(() => s.close());
    t.ok((await s.enrol({ deviceId: 'SHOP1', serial: '10', notAfter: T0 + DAY, at: T0 })).ok);
    const longer = await s.enrol({ deviceId: 'SHOP12', serial: '11', notAfter: T0 + DAY, at: T0 });
    t.notOk(longer.ok);
    t.match(!longer.ok && longer.problem, /SHOP12 and the enrolled box SHOP1 begin alike/);
    t.notOk((await s.enrol({ deviceId: 'SHOP', serial: '12', notAfter: T0 + DAY, at: T0 })).ok);
    t.equal(await s.certificate('11'), undefined);
    t.same((await s.boxes()).map((b) => b.deviceId), ['SHOP1']);
    await t.rejects(s.enrol({ deviceId: 'OTHER', serial: '10', notAfter: T0 + DAY, at: T0 }), 'a serial is a unique key');
  });

  t.test('revoke: every certificate; an unknown box is false; a second revoke keeps the first time', async (t) => {
    const s = await make.fresh();
    t.teardown(() => s.close());
    await s.enrol({ deviceId: 'R1', serial: '21', notAfter: T0 + DAY, at: T0 });
    t.equal(await s.revoke('NOPE', T0), false);
    t.equal(await s.revoke('R1', T0 + 5), true);
    t.equal(await s.revoke('R1', T0 + 9), true);
    t.equal((await s.box('R1'))!.revokedAt, T0 + 5);
    t.equal((await s.certificate('21'))!.revokedAt, T0 + 5);
  });

  t.test('peer and peers: a certificate and the box of its device id in one read, as the backend checks a connection', async (t) => {
    const s = await make.fresh();
    t.teardown(() => s.close());
    await s.enrol({ deviceId: 'P1', serial: '71', notAfter: T0 + DAY, at: T0 }, { maxAmountFen: 900 });
    await s.enrol({ deviceId: 'P1', serial: '72', notAfter: T0 + 2 * DAY, at: T0 + 1 });
    await s.enrol({ deviceId: 'P2', serial: '73', notAfter: T0 + DAY, at: T0 });
    await s.revoke('P2', T0 + 7);
    const current = await s.peer('72');
    t.same(current?.certificate, await s.certificate('72'));
    t.same(current?.box, await s.box('P1'), 'the box as box() reads it, with its current certificate');
    t.match(current?.box, { serial: '72', maxAmountFen: 900 });
    const earlier = await s.peer('71');
    t.equal(earlier?.certificate.revokedAt, T0 + 1, 'a certificate replaced by a newer one: revoked');
    t.same(earlier?.box, await s.box('P1'));
    t.match((await s.peer('73'))?.box, { deviceId: 'P2', revokedAt: T0 + 7 }, 'a revoked box');
    t.equal(await s.peer('ffff'), undefined, 'no such certificate');
    const many = await s.peers(['71', '72', '73', 'ffff', '72']);
    t.same([...many.keys()].sort(), ['71', '72', '73'], 'each serial found once; an unknown one left out');
    for (const serial of ['71', '72', '73']) t.same(many.get(serial), await s.peer(serial), `peers gives what peer gives (${serial})`);
    t.equal((await s.peers([])).size, 0);
  });

  t.test('boxes: in device id order (byte order)', async (t) => {
    const s = await make.fresh();
    t.teardown(() => s.close());
    for (const [i, id] of ['b2', 'B1', 'a3', 'A_4'].entries()) await s.enrol({ deviceId: id, serial: `3${i}`, notAfter: T0 + DAY, at: T0 });
    t.same((await s.boxes()).map((b) => b.deviceId), ['A_4', 'B1', 'a3', 'b2']);
  });

  t.test('calls: recorded before, finished after; counters, last seen, errors; a finished call is not finished twice', async (t) => {
    const s = await make.fresh();
    t.teardown(() => s.close());
    await s.enrol({ deviceId: 'C1', serial: '41', notAfter: T0 + DAY, at: T0 });
    const a = await s.startCall(call('C1', 'micropay', 'C1-0001', T0 + 100, { amountFen: 1234 }));
    const b = await s.startCall(call('C1', 'orderquery', 'C1-0001', T0 + 200));
    t.ok(b > a, 'ids grow');
    await s.finishCall(a, { outcome: 'unknown', code: 'TIMEOUT', ms: 5000.4 });
    await s.finishCall(b, { outcome: 'success', code: null, state: 'SUCCESS', paidAt: T0 + 150, ms: 12 });
    await t.rejects(s.finishCall(a, { outcome: 'success', code: null, ms: 1 }), /not a call under way/);
    await s.refusedCall(call('C1', 'refund', 'C1-0001', T0 + 300, { outRefundNo: 'C1-R1', amountFen: 99 }), 'REFUNDS_OFF');
    const box = (await s.box('C1'))!;
    t.match(box, { calls: 3, errors: 2, lastSeenAt: T0 + 300 });
    const calls = await s.calls({ deviceId: 'C1' });
    t.same(
      calls.map((c) => [c.call, c.outTradeNo, c.outRefundNo, c.outcome, c.code, c.state, c.amountFen, c.ms, c.at]),
      [
        ['micropay', 'C1-0001', null, 'unknown', 'TIMEOUT', null, 1234, 5000, T0 + 100],
        ['orderquery', 'C1-0001', null, 'success', null, 'SUCCESS', null, 12, T0 + 200],
        ['refund', 'C1-0001', 'C1-R1', 'refused', 'REFUNDS_OFF', null, 99, null, T0 + 300],
      ],
    );
    t.equal(calls[0]!.id, a);
    t.same(calls.map((c) => c.paidAt), [null, T0 + 150, null], "WeChat Pay's payment time where an answer gave it");
    t.same((await s.calls({ limit: 2 })).map((c) => c.call), ['orderquery', 'refund'], 'the newest, oldest first');
    t.same(await s.calls({ deviceId: 'OTHER' }), []);
  });

  t.test('tradeCalls: every call of the orders in the window or named, and the refundqueries of their refunds', async (t) => {
    const s = await make.fresh();
    t.teardown(() => s.close());
    await s.enrol({ deviceId: 'D1', serial: '51', notAfter: T0 + 9 * DAY, at: T0 });
    const at = (n: number) => T0 + n * 1000;
    await s.startCall(call('D1', 'micropay', 'D1-A', at(1), { amountFen: 100 }));
    await s.startCall(call('D1', 'refund', 'D1-A', at(2), { outRefundNo: 'D1-RA', amountFen: 50 }));
    await s.startCall(call('D1', 'refundquery', null, DAY + at(3), { outRefundNo: 'D1-RA' }));
    await s.startCall(call('D1', 'micropay', 'D1-B', DAY + at(4), { amountFen: 200 }));
    await s.startCall(call('D1', 'orderquery', 'D1-A', 2 * DAY + at(5)));
    await s.startCall(call('D1', 'micropay', 'D1-C', 3 * DAY + at(6), { amountFen: 300 }));
    await s.startCall(call('D1', 'downloadbill', null, at(7)));
    const day0 = await s.tradeCalls({ from: T0, to: T0 + DAY });
    t.same(
      day0.map((c) => [c.call, c.outTradeNo ?? c.outRefundNo]),
      [
        ['micropay', 'D1-A'],
        ['refund', 'D1-A'],
        ['refundquery', 'D1-RA'],
        ['orderquery', 'D1-A'],
      ],
    );
    const named = await s.tradeCalls({ from: T0, to: T0 + 1, outTradeNos: ['D1-C', 'D1-NONE'] });
    t.same(
      named.map((c) => c.outTradeNo),
      ['D1-C'],
    );
  });

  t.test('a second handle on the same journal sees every change; reopening keeps it all', async (t) => {
    const s = await make.fresh();
    const other = await make.again(s);
    t.teardown(async () => {
      await other.close();
      await s.close();
    });
    await s.enrol({ deviceId: 'E1', serial: '61', notAfter: T0 + DAY, at: T0 });
    t.equal((await other.box('E1'))!.serial, '61');
    t.ok(await other.revoke('E1', T0 + 1));
    t.equal((await s.certificate('61'))!.revokedAt, T0 + 1);
    // Many calls at once through both handles: every one recorded, the counter exact.
    await s.enrol({ deviceId: 'E2', serial: '62', notAfter: T0 + DAY, at: T0 });
    const ids = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? s : other).startCall(call('E2', 'orderquery', `E2-${i}`, T0 + i))));
    t.equal(new Set(ids).size, 40);
    await Promise.all(ids.map((id, i) => (i % 2 ? other : s).finishCall(id, { outcome: i % 4 === 0 ? 'unknown' : 'success', code: null, ms: 1 })));
    t.match(await s.box('E2'), { calls: 40, errors: 10, lastSeenAt: T0 + 39 });
    const third = await make.again(s);
    t.equal((await third.calls({ deviceId: 'E2' })).length, 40);
    await third.close();
  });

  t.test('setPolicy: a field given changes, null is the default again, an unknown box is false', async (t) => {
    const s = await make.fresh();
    t.teardown(() => s.close());
    await s.enrol({ deviceId: 'P1', serial: '71', notAfter: T0 + DAY, at: T0 }, { maxAmountFen: 500, refunds: 'on' });
    t.equal(await s.setPolicy('P1', { refunds: 'off' }), true);
    t.match(await s.box('P1'), { maxAmountFen: 500, refunds: 'off' });
    t.equal(await s.setPolicy('P1', { maxAmountFen: null }), true);
    t.match(await s.box('P1'), { maxAmountFen: null, refunds: 'off' });
    t.equal(await s.setPolicy('NOPE', { refunds: 'on' }), false);
  });

  t.test('orderStartedBefore: a micropay of this box before the time, not refused', async (t) => {
    const s = await make.fresh();
    t.teardown(() => s.close());
    await s.enrol({ deviceId: 'O1', serial: '81', notAfter: T0 + DAY, at: T0 });
    await s.enrol({ deviceId: 'X1', serial: '82', notAfter: T0 + DAY, at: T0 });
    await s.startCall(call('O1', 'micropay', 'O1-A', T0 + 10, { amountFen: 100 }));
    await s.refusedCall(call('O1', 'micropay', 'O1-B', T0 + 10, { amountFen: 100 }), 'AMOUNT_LIMIT');
    t.equal(await s.orderStartedBefore('O1', 'O1-A', T0 + 11), true);
    t.equal(await s.orderStartedBefore('O1', 'O1-A', T0 + 10), false, 'not before its own time');
    t.equal(await s.orderStartedBefore('O1', 'O1-B', T0 + 99), false, 'a refused micropay started nothing');
    t.equal(await s.orderStartedBefore('X1', 'O1-A', T0 + 99), false, "another box's order");
  });

  t.test('startRefund: only a paid order of the box, its own amount, never past it, the day cap, a retry not counted twice', async (t) => {
    const s = await make.fresh();
    t.teardown(() => s.close());
    await s.enrol({ deviceId: 'Q1', serial: '91', notAfter: T0 + 9 * DAY, at: T0 });
    const limits = { dayFrom: T0, dayTo: T0 + DAY, dayMaxFen: 1400 };
    const refund = (no: string, trade: string, fen: number, claimed: number, at = T0 + 1000): NewRefundCall => ({
      deviceId: 'Q1', call: 'refund', outTradeNo: trade, outRefundNo: no, amountFen: fen, claimedTotalFeeFen: claimed, at,
    });
    t.match(await s.startRefund(refund('Q1-R0', 'Q1-NONE', 10, 10), limits), { ok: false, code: 'NOT_CHARGED' });
    const paid = await s.startCall(call('Q1', 'micropay', 'Q1-A', T0 + 10, { amountFen: 1000 }));
    await s.finishCall(paid, { outcome: 'success', code: null, state: 'SUCCESS', ms: 1 });
    const other = await s.startCall(call('Q1', 'micropay', 'Q1-B', T0 + 20, { amountFen: 900 }));
    await s.finishCall(other, { outcome: 'success', code: null, state: 'SUCCESS', ms: 1 });
    t.match(await s.startRefund(refund('Q1-R1', 'Q1-A', 100, 999), limits), { ok: false, code: 'BAD_REQUEST' }, 'a false total_fee');
    const first = await s.startRefund(refund('Q1-R1', 'Q1-A', 600, 1000), limits);
    t.match(first, { ok: true, totalFeeFen: 1000, again: false });
    t.match(await s.startRefund(refund('Q1-R1', 'Q1-A', 600, 1000), limits), { ok: true, again: true }, 'a retry of the same refund');
    t.match(await s.startRefund(refund('Q1-R1', 'Q1-A', 500, 1000), limits), { ok: false, code: 'BAD_REQUEST' }, 'the same number for another amount');
    t.match(await s.startRefund(refund('Q1-R2', 'Q1-A', 401, 1000), limits), { ok: false, code: 'OVER_AMOUNT' });
    t.match(await s.startRefund(refund('Q1-R3', 'Q1-B', 900, 900), limits), { ok: false, code: 'REFUND_LIMIT' }, '600 + 900 > 1400 a day');
    t.match(await s.startRefund(refund('Q1-R3', 'Q1-B', 900, 900, T0 + DAY + 5), { dayFrom: T0 + DAY, dayTo: T0 + 2 * DAY, dayMaxFen: 1400 }), { ok: true }, 'the next day');
    t.match(await s.box('Q1'), { calls: 5 }, 'two micropays, the refund, its retry, the refund of the next day');
  });

  t.test('startRefund: two refunds of one order at once through two handles cannot both pass its amount', async (t) => {
    const s = await make.fresh();
    const other = await make.again(s);
    t.teardown(async () => {
      await other.close();
      await s.close();
    });
    await s.enrol({ deviceId: 'W1', serial: 'a1', notAfter: T0 + DAY, at: T0 });
    const paid = await s.startCall(call('W1', 'micropay', 'W1-A', T0 + 10, { amountFen: 1000 }));
    await s.finishCall(paid, { outcome: 'success', code: null, state: 'SUCCESS', ms: 1 });
    const limits = { dayFrom: T0, dayTo: T0 + DAY, dayMaxFen: 1_000_000 };
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        (i % 2 ? s : other).startRefund({ deviceId: 'W1', call: 'refund', outTradeNo: 'W1-A', outRefundNo: `W1-R${i}`, amountFen: 300, claimedTotalFeeFen: 1000, at: T0 + 100 + i }, limits),
      ),
    );
    t.equal(results.filter((r) => r.ok).length, 3, 'exactly 3 x 300 fen of 1000');
    t.equal(results.filter((r) => !r.ok && r.code === 'OVER_AMOUNT').length, 7);
  });
}
