import type { Test } from 'tap';
import { HEARTBEAT_HISTORY, type HeartbeatReport } from '../../../src/backend/heartbeat.js';
import type { NewCall } from '../../../src/backend/store.js';
import type { StoreMaker } from './suite.js';

/**
 * The store methods the fleet added (heartbeats, admins and their actions, policy, moneyBuckets,
 * attentionCalls): what any BackendStore must answer, with calls as the server records them. Part of the store
 * suite (suite.ts), so run on SQLite and on PostgreSQL alike.
 */

const HOUR = 3_600_000;
const DAY = 86_400_000;
const CHINA = 8 * HOUR;
// 2026-12-07 00:00 China time.
const DAY_START = Date.UTC(2026, 11, 6, 16, 0, 0);

export function fleetSuite(t: Test, make: StoreMaker): void {
  t.test('moneyBuckets: paid by micropay or orderquery, given back by reverse, refunds accepted and not CHANGE', async (t) => {
    const store = await make.fresh();
    t.teardown(() => store.close());
    const call = async (c: Partial<NewCall> & { call: NewCall['call']; at: number }, outcome: 'success' | 'business' | 'refused', state: string | null) => {
      const full: NewCall = { deviceId: 'A1', outTradeNo: null, outRefundNo: null, ...c };
      if (outcome === 'refused') return store.refusedCall(full, 'AMOUNT_LIMIT');
      const id = await store.startCall(full);
      await store.finishCall(id, { outcome, code: null, state, ms: 10 });
    };
    const h = (n: number) => DAY_START + n * HOUR + 60_000;
    await call({ call: 'micropay', outTradeNo: 'A1X1', amountFen: 1000, at: h(9) }, 'success', 'SUCCESS');
    // Paid after the password: micropay USERPAYING, then orderquery SUCCESS an hour later.
    await call({ call: 'micropay', outTradeNo: 'A1X2', amountFen: 500, at: h(9) }, 'business', null);
    await call({ call: 'orderquery', outTradeNo: 'A1X2', at: h(10) }, 'success', 'SUCCESS');
    // Reversed: not paid.
    await call({ call: 'micropay', outTradeNo: 'A1X3', amountFen: 700, at: h(11) }, 'business', null);
    await call({ call: 'reverse', outTradeNo: 'A1X3', at: h(11) }, 'success', 'REVERSED');
    // Refused by the backend: nothing.
    await call({ call: 'micropay', outTradeNo: 'A1X4', amountFen: 9_999_999, at: h(11) }, 'refused', null);
    // Another box, the day before (begun before midnight, paid after midnight counts today).
    await call({ deviceId: 'B2', call: 'micropay', outTradeNo: 'B2X1', amountFen: 300, at: DAY_START - 1000 }, 'business', null);
    await call({ deviceId: 'B2', call: 'orderquery', outTradeNo: 'B2X1', at: DAY_START + 1000 }, 'success', 'SUCCESS');
    await call({ deviceId: 'B2', call: 'micropay', outTradeNo: 'B2X0', amountFen: 200, at: DAY_START - HOUR }, 'success', 'SUCCESS');
    // Refunds: one accepted, one accepted and then CHANGE.
    await call({ call: 'refund', outTradeNo: 'A1X1', outRefundNo: 'A1R1', amountFen: 100, at: h(12) }, 'success', 'ACCEPTED');
    await call({ call: 'refund', outTradeNo: 'A1X1', outRefundNo: 'A1R2', amountFen: 200, at: h(12) }, 'success', 'ACCEPTED');
    await call({ call: 'refundquery', outRefundNo: 'A1R2', at: h(13) }, 'success', 'CHANGE');

    const days = await store.moneyBuckets({ from: DAY_START - DAY, to: DAY_START + DAY, bucketMs: DAY, offsetMs: CHINA });
    const today = Math.floor((DAY_START + CHINA) / DAY);
    t.same(days, [
      { deviceId: 'A1', bucket: today, paidCount: 2, paidFen: 1500, refundCount: 1, refundFen: 100 },
      { deviceId: 'B2', bucket: today - 1, paidCount: 1, paidFen: 200, refundCount: 0, refundFen: 0 },
      { deviceId: 'B2', bucket: today, paidCount: 1, paidFen: 300, refundCount: 0, refundFen: 0 },
    ]);
    const hours = await store.moneyBuckets({ from: DAY_START, to: DAY_START + DAY, bucketMs: HOUR, offsetMs: CHINA, deviceId: 'A1' });
    t.same(
      hours.map((b) => [b.bucket % 24, b.paidFen, b.refundFen]),
      [
        [9, 1000, 0],
        [10, 500, 0],
        [12, 0, 100],
      ],
      'China hours, one box',
    );
    const attention = await store.attentionCalls({ from: DAY_START });
    t.same(attention.map((c) => c.call), ['reverse', 'refund', 'refund', 'refundquery']);
  });

  t.test('money buckets: the same sums as the calls recounted, over varied calls, retries and two backends at once', async (t) => {
    const store = await make.fresh();
    const other = await make.again(store);
    t.teardown(async () => {
      await other.close();
      await store.close();
    });
    // A small deterministic generator: the same calls on every store.
    let seed = 20_261_207;
    const rand = (n: number): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return seed % n;
    };
    const finish = async (s: typeof store, c: NewCall, outcome: 'success' | 'business' | 'unknown', state: string | null, ms = 10): Promise<number> => {
      const id = await s.startCall(c);
      await s.finishCall(id, { outcome, code: outcome === 'business' ? 'X' : null, state, ms });
      return id;
    };
    const start = DAY_START - DAY;
    let n = 0;
    for (const box of ['M1', 'M2', 'M3']) {
      for (let i = 0; i < 60; i++) {
        const at = start + rand(3 * DAY - 10 * 60_000);
        const no = `${box}X${n++}`;
        const amount = 1 + rand(50_000);
        const c = (call: NewCall['call'], dt: number, extra: Partial<NewCall> = {}): NewCall => ({ deviceId: box, call, outTradeNo: no, outRefundNo: null, at: at + dt, ...extra });
        const plot = rand(10);
        if (plot === 0) {
          // Paid at once, and asked about again by a second backend (a retry: it must not count twice).
          await finish(store, c('micropay', 0, { amountFen: amount }), 'success', 'SUCCESS');
          await finish(other, c('orderquery', 30_000), 'success', 'SUCCESS');
        } else if (plot === 1) {
          // The password: USERPAYING, then the query says paid (an hour may pass in between).
          await finish(store, c('micropay', 0, { amountFen: amount }), 'business', null);
          await finish(store, c('orderquery', 5000), 'success', 'USERPAYING');
          await finish(store, c('orderquery', rand(2) * HOUR), 'success', 'SUCCESS');
        } else if (plot === 2) {
          // Unknown, then reversed.
          await finish(store, c('micropay', 0, { amountFen: amount }), 'unknown', null);
          await finish(store, c('reverse', 20_000), 'success', 'REVERSED');
        } else if (plot === 3) {
          // Paid, then a query says REVOKED, CLOSED or PAYERROR: given back.
          await finish(store, c('micropay', 0, { amountFen: amount }), 'success', 'SUCCESS');
          await finish(store, c('orderquery', 60_000), 'success', ['REVOKED', 'CLOSED', 'PAYERROR'][rand(3)]!);
        } else if (plot === 4) {
          // Refused by the backend: nothing anywhere.
          await store.refusedCall(c('micropay', 0, { amountFen: amount }), 'AMOUNT_LIMIT');
        } else if (plot === 5) {
          // A micropay and an orderquery of one order finished at once through two backends, the later-started first.
          const a = await store.startCall(c('micropay', 0, { amountFen: amount }));
          const b = await other.startCall(c('orderquery', 45 * 60_000));
          await Promise.all([other.finishCall(b, { outcome: 'success', code: null, state: 'SUCCESS', ms: 1 }), store.finishCall(a, { outcome: 'success', code: null, state: 'SUCCESS', ms: 1 })]);
          // The same outcome recorded a second time is refused and moves nothing.
          await t.rejects(store.finishCall(a, { outcome: 'success', code: null, state: 'SUCCESS', ms: 1 }));
        } else {
          // Paid, with refunds: accepted, accepted twice (a retry with the same out_refund_no), then CHANGE or
          // REFUNDCLOSE or SUCCESS by a refundquery, refused by WeChat Pay, unknown.
          await finish(store, c('micropay', 0, { amountFen: amount }), 'success', 'SUCCESS');
          for (let r = 0; r < 1 + rand(3); r++) {
            const rno = `${no}R${r}`;
            const refund = c('refund', 600_000 + r * 1000, { outRefundNo: rno, amountFen: 1 + rand(amount) });
            const fate = rand(6);
            if (fate === 0) await finish(store, refund, 'business', null);
            else if (fate === 1) await finish(store, refund, 'unknown', null);
            else {
              await finish(store, refund, 'success', 'ACCEPTED');
              if (fate === 2) await finish(other, refund, 'success', 'ACCEPTED');
              if (fate === 3) await finish(store, c('refundquery', 900_000, { outTradeNo: null, outRefundNo: rno }), 'success', ['CHANGE', 'REFUNDCLOSE', 'SUCCESS'][rand(3)]!);
            }
          }
        }
      }
    }
    let compared = 0;
    for (const d of [-1, 0, 1]) {
      const from = DAY_START + d * DAY;
      for (const deviceId of [undefined, 'M2']) {
        for (const [bucketMs, range] of [
          [DAY, DAY],
          [HOUR, DAY],
        ] as const) {
          for (const total of [false, true]) {
            const o = { from, to: from + range, bucketMs, offsetMs: CHINA, ...(deviceId ? { deviceId } : {}), total };
            const kept = await store.moneyBuckets(o);
            t.same(kept, await store.recountMoney(o), `day ${d}, ${deviceId ?? 'all'}, ${bucketMs === DAY ? 'by day' : 'by hour'}${total ? ', total' : ''}`);
            compared += kept.length;
          }
        }
      }
    }
    t.ok(compared > 100, `${compared} buckets compared`);
    // Three days at once, by the day.
    const o = { from: DAY_START - DAY, to: DAY_START + 2 * DAY, bucketMs: DAY, offsetMs: CHINA };
    t.same(await other.moneyBuckets(o), await store.recountMoney(o), 'three days, as another backend reads them');
    await t.rejects(store.moneyBuckets({ from: DAY_START + 1, to: DAY_START + DAY, bucketMs: DAY, offsetMs: CHINA }), TypeError);
  });

  t.test('reconciliations: a day kept, replaced by a later run of the same day, read from a day on', async (t) => {
    const store = await make.fresh();
    t.teardown(() => store.close());
    const d = { kind: 'PAID_NOT_IN_BILL', box: 'A1', out_trade_no: 'A1X1', what: 'paid, not in the bill' };
    await store.recordReconciliation({ day: '20261205', at: 1, matched: 3, discrepancies: [d] });
    await store.recordReconciliation({ day: '20261206', at: 2, matched: 4, discrepancies: [d, { ...d, box: null, out_trade_no: 'ZZ1', kind: 'UNKNOWN_ORDER' }] });
    await store.recordReconciliation({ day: '20261206', at: 3, matched: 5, discrepancies: [d] });
    t.same(await store.reconciliations({ fromDay: '20261206' }), [{ day: '20261206', at: 3, matched: 5, discrepancies: [d] }]);
    t.same((await store.reconciliations({ fromDay: '20260101' })).map((r) => r.day), ['20261205', '20261206']);
  });

  t.test('heartbeats, policy, admins and their actions', async (t) => {
    const store = await make.fresh();
    t.teardown(() => store.close());
    const r: HeartbeatReport = {
      version: '0.1.0', health: 'READY', healthText: '', uptimeS: 1, clockSynced: true, openSale: null, pendingReversals: 0,
      pendingRefunds: 0, reconciliation: null, diskFreeBytes: null, journalBytes: null, sentAt: 5,
    };
    await store.recordHeartbeat({ deviceId: 'A1', at: 1, report: r });
    await store.recordHeartbeat({ deviceId: 'A1', at: 2, report: { ...r, health: 'BUSY', openSale: 'R9' } });
    await store.recordHeartbeat({ deviceId: 'B2', at: 3, report: r });
    t.same((await store.latestHeartbeats()).map((h) => [h.deviceId, h.at, h.report.openSale]), [['A1', 2, 'R9'], ['B2', 3, null]]);
    t.same((await store.heartbeats('A1')).map((h) => h.at), [2, 1]);
    t.equal(await store.setPolicy('A1', { maxAmountFen: 5 }), false, 'no such box');
    await store.enrol({ deviceId: 'A1', serial: 'aa', notAfter: 1e13, at: 1 });
    t.equal(await store.setPolicy('A1', { maxAmountFen: 5, refunds: 'off' }), true);
    t.match(await store.box('A1'), { maxAmountFen: 5, refunds: 'off' });
    t.equal(await store.putAdmin({ name: 'x', passwordHash: 'scrypt$h1', at: 1 }), true);
    t.equal(await store.putAdmin({ name: 'x', passwordHash: 'scrypt$h2', at: 2 }), false, 'replaced');
    t.match(await store.admin('x'), { name: 'x', passwordHash: 'scrypt$h2', createdAt: 1 });
    t.equal(await store.removeAdmin('x'), true);
    t.equal(await store.removeAdmin('x'), false);
    await store.recordAdminAction({ admin: 'x', action: 'revoke', deviceId: 'A1', detail: '', at: 7 });
    await store.recordAdminAction({ admin: 'x', action: 'login', deviceId: null, detail: 'from 127.0.0.1', at: 8 });
    t.match(await store.adminActions({ limit: 1 }), [{ action: 'login', at: 8 }]);
  });

  t.test('heartbeats in a batch: every one in the history, a box twice its last as the latest; the revocation mark moves with each revocation', async (t) => {
    const store = await make.fresh();
    t.teardown(() => store.close());
    const r: HeartbeatReport = {
      version: '0.1.0', health: 'READY', healthText: '', uptimeS: 1, clockSynced: true, openSale: null, pendingReversals: 0,
      pendingRefunds: 0, reconciliation: null, diskFreeBytes: null, journalBytes: null, sentAt: 5,
    };
    await store.recordHeartbeat({ deviceId: 'B1', at: 1, report: r });
    await store.recordHeartbeats([
      { deviceId: 'B1', at: 10, report: { ...r, uptimeS: 10 } },
      { deviceId: 'B2', at: 11, report: { ...r, uptimeS: 11 } },
      { deviceId: 'B1', at: 12, report: { ...r, uptimeS: 12, health: 'BUSY' } },
    ]);
    await store.recordHeartbeats([]);
    t.same((await store.latestHeartbeats()).map((h) => [h.deviceId, h.at, h.report.health]), [['B1', 12, 'BUSY'], ['B2', 11, 'READY']]);
    t.same((await store.heartbeats('B1')).map((h) => h.report.uptimeS), [12, 10, 1]);
    // A batch past the pruning point of a box still leaves at most the history.
    const many = Array.from({ length: HEARTBEAT_HISTORY + 70 }, (_, i) => ({ deviceId: 'B3', at: 100 + i, report: { ...r, uptimeS: i } }));
    await store.recordHeartbeats(many.slice(0, 700));
    await store.recordHeartbeats(many.slice(700));
    await store.recordHeartbeat({ deviceId: 'B3', at: 99_999, report: r });
    t.equal((await store.heartbeats('B3')).length, HEARTBEAT_HISTORY);
    t.equal((await store.heartbeats('B3'))[0]!.at, 99_999);

    const m0 = await store.revocationMark();
    await store.enrol({ deviceId: 'C1', serial: 'c1', notAfter: 1e13, at: 1 });
    t.equal(await store.revocationMark(), m0, 'an enrolment of a new box revokes nothing');
    await store.enrol({ deviceId: 'C1', serial: 'c2', notAfter: 1e13, at: 2 });
    const m1 = await store.revocationMark();
    t.not(m1, m0, 'a certificate replaced');
    await store.revoke('C1', 1);
    const m2 = await store.revocationMark();
    t.not(m2, m1, 'a box revoked, even with an earlier time');
    await store.revoke('C1', 3);
    t.equal(await store.revocationMark(), m2, 'revoking a revoked box revokes nothing more');
  });

  t.test('heartbeats: a box keeps a bounded history of its own, whatever the others send; the latest is the newest', async (t) => {
    const store = await make.fresh();
    t.teardown(() => store.close());
    const r: HeartbeatReport = {
      version: '0.1.0', health: 'READY', healthText: '', uptimeS: 1, clockSynced: true, openSale: null, pendingReversals: 0,
      pendingRefunds: 0, reconciliation: null, diskFreeBytes: null, journalBytes: null, sentAt: 5,
    };
    const total = HEARTBEAT_HISTORY + 40;
    // Two boxes in turn, as a fleet's heartbeats interleave.
    for (let i = 1; i <= total; i++) {
      await store.recordHeartbeat({ deviceId: 'H1', at: i, report: { ...r, uptimeS: i } });
      if (i % 100 === 0) await store.recordHeartbeat({ deviceId: 'H2', at: i, report: r });
    }
    const history = await store.heartbeats('H1');
    t.equal(history.length, HEARTBEAT_HISTORY, 'never more than the history');
    t.equal(history[0]!.at, total, 'newest first');
    t.equal(history.at(-1)!.at, total - HEARTBEAT_HISTORY + 1);
    t.same((await store.heartbeats('H1', { limit: 3 })).map((h) => h.report.uptimeS), [total, total - 1, total - 2]);
    t.same((await store.heartbeats('H2')).length, Math.floor(total / 100));
    t.same((await store.latestHeartbeats()).map((h) => [h.deviceId, h.at]), [['H1', total], ['H2', Math.floor(total / 100) * 100]]);
    t.same(await store.heartbeats('NONE'), []);
  });
}
