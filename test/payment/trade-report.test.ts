import { createServer, type Socket } from 'node:net';
import t from 'tap';
import { VirtualClock } from '../../src/clock.js';
import { memoryLogger } from '../../src/log.js';
import { MICROPAY_TOTAL_URL, TradeReporter, chinaTime, reportOf } from '../../src/payment/trade-report.js';
import { WechatPayClient } from '../../src/wechatpay/client.js';
import { sell } from '../helpers/faults.js';
import { DEVICE_ID, clientOptions, createWorld } from '../helpers/world.js';

/**
 * The trade report (交易保障) through the real client to the simulator, which checks and records it: one per
 * payment, by level; and never in the way: a report to a server that never answers gives up after 1 s, and
 * closing the client does not wait for it.
 */

t.test('one report per payment: errors (default) reports the failed, all reports every one, off none', async (t) => {
  const w = await createWorld({ clock: new VirtualClock(Date.UTC(2026, 11, 1, 2, 0, 0)) });
  t.teardown(() => w.close());
  const paid = (await sell(w, null, { ref: 'TR-1', amount: 1500 })).sale;
  const failed = (await sell(w, { outcome: 'NOTENOUGH' }, { ref: 'TR-2', amount: 700 })).sale;
  const never = w.engine.failOpen(w.engine.open('TR-3', 100).id, 'CANCELLED');

  t.equal(reportOf(paid, 'errors', DEVICE_ID), null, 'errors: a paid sale is not reported');
  t.equal(reportOf(never, 'all', DEVICE_ID), null, 'nothing was sent: nothing to report');
  t.equal(reportOf(failed, 'off', DEVICE_ID), null);
  t.match(reportOf(failed, 'errors', DEVICE_ID), {
    interfaceUrl: MICROPAY_TOTAL_URL,
    returnCode: 'SUCCESS',
    resultCode: 'FAIL',
    errCode: 'NOTENOUGH',
    outTradeNo: failed.outTradeNo,
    deviceInfo: DEVICE_ID,
    time: '20261201100000',
  });

  const log = memoryLogger('debug');
  const all = new TradeReporter(w.client, 'all', DEVICE_ID, log);
  all.sale(paid);
  all.sale(failed);
  all.sale(never);
  await all.settled();
  const reports = w.sim.tradeReports();
  t.same(
    reports.map((r) => [r.outTradeNo, r.interfaceUrl, r.returnCode, r.resultCode, r.errCode, r.deviceInfo]),
    [
      [paid.outTradeNo, MICROPAY_TOTAL_URL, 'SUCCESS', 'SUCCESS', null, DEVICE_ID],
      [failed.outTradeNo, MICROPAY_TOTAL_URL, 'SUCCESS', 'FAIL', 'NOTENOUGH', DEVICE_ID],
    ],
    'checked and recorded by the simulator (signature, fields)',
  );
  t.ok(reports.every((r) => r.time === '20261201100000' && r.executeMs >= 0));
  t.equal(log.lines.filter((l) => /trade report .*result=taken/.test(l)).length, 2);
  t.equal(chinaTime(Date.UTC(2026, 11, 31, 16, 0, 1)), '20270101000001', 'China time is UTC+8');
});

t.test('a report endpoint that never answers: given up after 1 s, and closing the client does not wait for it', async (t) => {
  const sockets = new Set<Socket>();
  const silent = createServer((socket) => void sockets.add(socket.on('error', () => undefined)));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => (sockets.forEach((s) => s.destroy()), silent.close(() => resolve()))));
  const w = await createWorld();
  t.teardown(() => w.close());
  const port = (silent.address() as { port: number }).port;
  const client = new WechatPayClient({ ...clientOptions(w.sim), apiBase: `https://127.0.0.1:${port}` });
  const started = performance.now();
  const report = client.tradeReport({
    interfaceUrl: MICROPAY_TOTAL_URL,
    executeMs: 10,
    returnCode: 'SUCCESS',
    returnMsg: 'OK',
    resultCode: 'SUCCESS',
    outTradeNo: 'TRX1',
    time: '20261201100000',
  });
  const result = await report;
  const ms = performance.now() - started;
  t.equal(result.ok, false);
  t.ok(ms >= 900 && ms < 3000, `gave up after ${Math.round(ms)} ms`);

  const second = client.tradeReport({ interfaceUrl: MICROPAY_TOTAL_URL, executeMs: 1, returnCode: 'SUCCESS', returnMsg: 'OK', resultCode: 'SUCCESS', outTradeNo: 'TRX2', time: '20261201100000' });
  const closing = performance.now();
  await client.close();
  t.ok(performance.now() - closing < 500, 'close() dropped the report under way instead of waiting for it');
  t.equal((await second).ok, false);
});
