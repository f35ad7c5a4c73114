import { execFile } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { enrolBox } from '../../src/backend/enrol.js';
import { BackendGateway } from '../../src/backend/gateway.js';
import { BackendPki } from '../../src/backend/pki.js';
import { reconcileBackend, type BackendDiscrepancy } from '../../src/backend/reconcile.js';
import { BackendServer } from '../../src/backend/server.js';
import { SqliteBackendStore, type CallRecord } from '../../src/backend/store.js';
import { businessDay, dayBounds } from '../../src/business-day.js';
import { systemClock } from '../../src/clock.js';
import { Journal } from '../../src/journal/journal.js';
import { memoryLogger } from '../../src/log.js';
import { PaymentEngine } from '../../src/payment/engine.js';
import { RefundEngine } from '../../src/payment/refund.js';
import { GatewaySimulator } from '../../src/simulator/gateway.js';
import { WechatPayClient } from '../../src/wechatpay/client.js';
import { MERCHANT, clientOptions, freshCode, tempDir } from '../helpers/world.js';

/**
 * `scanbox backend reconcile`: the merchant's whole bill of the day (the simulator's, built from its ledger) against
 * the backend's journal of the calls it forwarded, box by box. Two boxes sell through a real backend (engines, the
 * BackendGateway, mutual TLS); the command runs as a process (dist/cli.js) on the backend's journal. A clean day
 * matches; each planted difference is found once with its kind and box; exit 1, 2 and 3 as `scanbox reconcile`.
 * Then the backend's own blind spots, on hand-made journals: a micropay it was killed in, a reverse WeChat Pay asked
 * to call again, a refund it refused, an order reversed after the bill was made.
 */

const CLI = new URL('../../dist/cli.js', import.meta.url).pathname;
const DAY_MS = 86_400_000;

function cli(args: string[], env: Record<string, string>): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const base: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined && !key.startsWith('SCANBOX_') && key !== 'NODE_OPTIONS') base[key] = value;
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...base, ...env }, encoding: 'utf8', timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ status: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr });
    });
  });
}

/** The variables `scanbox backend` is given, with the simulator's files written into `dir`. */
function backendEnv(sim: GatewaySimulator, dir: string, dbPath: string): Record<string, string> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'apikey'), MERCHANT.apiKey + '\n', { mode: 0o600 });
  writeFileSync(join(dir, 'cert.pem'), sim.pki.client.certPem);
  writeFileSync(join(dir, 'key.pem'), sim.pki.client.keyPem, { mode: 0o600 });
  writeFileSync(join(dir, 'ca.pem'), sim.pki.ca.certPem);
  return {
    SCANBOX_MCH_ID: MERCHANT.mchId,
    SCANBOX_APPID: MERCHANT.appId,
    SCANBOX_API_KEY_FILE: join(dir, 'apikey'),
    SCANBOX_CERT_FILE: join(dir, 'cert.pem'),
    SCANBOX_CERT_KEY_FILE: join(dir, 'key.pem'),
    SCANBOX_API_BASE: sim.origin,
    SCANBOX_API_BACKUP_BASE: 'none',
    NODE_EXTRA_CA_CERTS: join(dir, 'ca.pem'),
    SCANBOX_BACKEND_DB: dbPath,
  };
}

type Parsed = {
  date: string;
  matched: number;
  discrepancies: BackendDiscrepancy[];
  boxes: { box: string; rows: number; matched: number; discrepancies: number }[];
  rows: { total: number; unenrolled: number };
};

t.test('two boxes through a real backend, the day reconciled by the backend', async (t) => {
  // Today's bill as it stands (WeChat Pay's would be ready at 09:00 tomorrow).
  const sim = await GatewaySimulator.start({ ...MERCHANT, billReadyAfterMs: -DAY_MS });
  t.teardown(() => sim.close());
  const dir = tempDir('scanbox-backend-reconcile-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const dbPath = join(dir, 'backend', 'backend.db');
  const log = memoryLogger('debug');
  const upstream = new WechatPayClient({ ...clientOptions(sim), log });
  const store = SqliteBackendStore.open(dbPath);
  const pki = BackendPki.openOrCreate(join(dir, 'backend'), { hostname: 'backend.test' });
  const server = await BackendServer.start({
    listen: { host: '127.0.0.1', port: 0 },
    store,
    pki,
    client: upstream,
    policy: { maxAmountFen: 1_000_000, refunds: 'on', bills: 'on', ratePerMinute: 600 },
    log,
    recheckMs: 0,
  });
  const closers: Array<() => Promise<void> | void> = [];
  t.teardown(async () => {
    for (const close of closers.reverse()) await close();
    await server.close();
    await upstream.close();
    await store.close();
  });
  const box = async (deviceId: string) => {
    const { certificate } = await enrolBox(pki, store, deviceId);
    const gateway = new BackendGateway({ origin: server.origin, certificate, caPem: pki.caPem });
    const journal = Journal.open(join(dir, `${deviceId}.db`), { deviceId, clock: systemClock });
    const engine = new PaymentEngine({
      journal,
      gateway,
      clock: systemClock,
      log,
      body: 'scanbox test',
      deviceId,
      pollMs: 100,
      userpayingTimeoutMs: 300,
      minReverseDelayMs: 0,
      reverseBackoffMs: [50],
    });
    const refunds = new RefundEngine({ journal, gateway, clock: systemClock, log });
    closers.push(async () => {
      await engine.stopReversalQueue();
      await refunds.stopQueue();
      journal.close();
      await gateway.close();
    });
    const sell = async (ref: string, amountFen: number, scenario?: Parameters<GatewaySimulator['setScenario']>[1]): Promise<string> => {
      const started = engine.startSale(ref, amountFen);
      if (started.kind !== 'open') throw new Error(`sale ${ref} not open: ${started.kind}`);
      const payment = freshCode();
      if (scenario) sim.setScenario(payment, scenario);
      const sale = await engine.pay(started.sale.id, payment);
      return `${sale.state} ${sale.outTradeNo}`;
    };
    const refund = async (ref: string, amountFen: number, rid: string) => {
      const requested = refunds.request({ ref, amountFen, rid, source: 'technician' });
      if (requested.kind !== 'created') throw new Error(`refund not recorded: ${requested.kind}`);
      return refunds.drive(requested.refund.id);
    };
    return { engine, sell, refund };
  };
  const a = await box('RECA');
  const b = await box('RECB');
  const otn = (line: string) => line.split(' ')[1]!;
  const a1 = await a.sell('RA-1', 1200);
  const a2 = await a.sell('RA-2', 3400);
  const a3 = await a.sell('RA-3', 500, { outcome: 'userpaying' });
  const a4 = await a.sell('RA-4', 800);
  const b1 = await b.sell('RB-1', 500);
  t.same([a1, a2, a3, a4, b1].map((l) => l.split(' ')[0]), ['paid', 'paid', 'reversed', 'paid', 'paid']);
  const refunded = await a.refund('RA-2', 400, 'RAR-1');
  t.match(refunded.state, /^(accepted|succeeded)$/, `refund ${refunded.state}`);
  const manual = await a.engine.manualReverse(otn(a4));
  t.equal(manual.ok, true, 'a paid sale reversed by a technician: a REVOKED row in the bill');

  const micropay = (await store.calls()).find((c) => c.outTradeNo === otn(a1) && c.call === 'micropay');
  t.match(micropay, { amountFen: 1200, outcome: 'success', state: 'SUCCESS' }, 'the journal keeps the amount and what the answer said');
  const queried = (await store.calls()).filter((c) => c.outTradeNo === otn(a3) && c.call === 'orderquery');
  t.ok(queried.length > 0 && queried.every((c) => c.state === 'USERPAYING'), 'orderquery: its trade_state');

  const env = backendEnv(sim, join(dir, 'merchant'), dbPath);
  const today = businessDay(Date.now(), 'Asia/Shanghai');

  await t.test('a clean day: every row of every box matched, exit 0', async (t) => {
    const run = await cli(['backend', 'reconcile', '--date', today, '--json'], env);
    t.equal(run.status, 0, run.stdout + run.stderr);
    const result = JSON.parse(run.stdout) as Parsed;
    t.same(result.discrepancies, []);
    t.equal(result.matched, 5, 'RA-1, RA-2 and its refund, RA-4 (REVOKED), RB-1; RA-3 was never charged: not in the bill');
    t.same(result.boxes, [
      { box: 'RECA', rows: 4, matched: 4, discrepancies: 0 },
      { box: 'RECB', rows: 1, matched: 1, discrepancies: 0 },
    ]);
    t.same(result.rows, { total: 5, unenrolled: 0 });
    t.match(run.stderr, /<6>reconciliation done .*discrepancies=0/);
    const text = await cli(['backend', 'reconcile', '--date', today], env);
    t.equal(text.status, 0);
    t.match(text.stdout, /the backend cannot know what each register was told/);
    t.match(text.stdout, /RECA: 4 row\(s\), 4 matched, 0 discrepancies/);
    t.match(await store.reconciliations({ fromDay: today }), [{ day: today, matched: 5, discrepancies: [] }], "kept for the console's problems page");
  });

  await t.test('each planted difference found once with its kind and box; exit 1; logged at error level', async (t) => {
    const at = Date.now();
    // WeChat Pay kept an order the box reversed (a reverse it did not honour).
    sim.plantBillRow({ at, outTradeNo: otn(a3), tradeState: 'SUCCESS', deviceInfo: 'RECA', orderFen: 500, settlementFen: 500, attach: 'RA-3' });
    // A paid sale missing from the bill.
    sim.dropFromBill(otn(a1));
    // Another amount.
    sim.amendBillRow(otn(b1), { orderFen: 450, settlementFen: 450 });
    // An order of RECA that never went through the backend.
    sim.plantBillRow({ at, outTradeNo: 'RECAZZZZ00000999', tradeState: 'SUCCESS', deviceInfo: 'RECA', orderFen: 777, settlementFen: 777, attach: 'GHOST' });
    // An order of no enrolled box: another till of the merchant.
    sim.plantBillRow({ at, outTradeNo: 'TILL9000000000000001', tradeState: 'SUCCESS', deviceInfo: 'TILL9', orderFen: 1000, settlementFen: 1000 });
    // A refund the backend never forwarded.
    sim.plantBillRow({
      at,
      outTradeNo: otn(a2),
      tradeState: 'REFUND',
      deviceInfo: 'RECA',
      outRefundNo: 'RECAZZZZR00000999',
      refundId: '50300000000000000000000000999',
      refundFen: 100,
      requestedRefundFen: 100,
      settlementFen: 0,
      orderFen: 3400,
    });
    const run = await cli(['backend', 'reconcile', '--date', today, '--json'], env);
    t.equal(run.status, 1, run.stdout + run.stderr);
    const result = JSON.parse(run.stdout) as Parsed;
    t.same(
      result.discrepancies.map((d) => [d.kind, d.box, d.out_trade_no]).sort(),
      [
        ['AMOUNT_MISMATCH', 'RECB', otn(b1)],
        ['CHARGED_NOT_RECORDED', 'RECA', otn(a3)],
        ['PAID_NOT_IN_BILL', 'RECA', otn(a1)],
        ['REFUND_MISMATCH', 'RECA', otn(a2)],
        ['UNKNOWN_ORDER', 'RECA', 'RECAZZZZ00000999'],
        ['UNKNOWN_ORDER', null, 'TILL9000000000000001'],
      ].sort(),
    );
    t.match(result.discrepancies.find((d) => d.kind === 'CHARGED_NOT_RECORDED'), { state: 'reversed', bill_fen: 500, backend_fen: 500, what: /confirmed a reverse/ });
    t.match(result.discrepancies.find((d) => d.kind === 'AMOUNT_MISMATCH'), { bill_fen: 450, backend_fen: 500 });
    t.match(result.discrepancies.find((d) => d.box === null), { ref: null, what: /of no box enrolled/ });
    t.match(result.boxes, [{ box: 'RECA', discrepancies: 4 }, { box: 'RECB', discrepancies: 1 }]);
    t.same(result.rows.unenrolled, 1);
    t.equal(run.stderr.split('\n').filter((l) => l.startsWith('<3>reconciliation: ')).length, 6, 'each at error level');
    const kept = await store.reconciliations({ fromDay: today });
    t.equal(kept.length, 1, 'the day kept once, the clean run replaced');
    t.same(
      kept[0]!.discrepancies.map((d) => [d.kind, d.box, d.out_trade_no]).sort(),
      result.discrepancies.map((d) => [d.kind, d.box, d.out_trade_no]).sort(),
      "the backend's discrepancies kept for the console's problems page",
    );
    const text = await cli(['backend', 'reconcile', '--date', today], env);
    t.match(text.stdout, /CHARGED_NOT_RECORDED \S+ box RECA ref RA-3 \(bill 5\.00, backend 5\.00\)\n {2}[^\n]*\n {2}to do: [^\n]*scanbox reconcile on the box/);
    sim.clearBillChanges();
  });

  await t.test('a day without trades, a bad date, the bill not ready yet', async (t) => {
    const yesterday = businessDay(Date.now() - DAY_MS, 'Asia/Shanghai');
    const empty = await cli(['backend', 'reconcile', '--date', yesterday, '--json'], env);
    t.equal(empty.status, 0, empty.stdout + empty.stderr);
    t.match(JSON.parse(empty.stdout), { date: yesterday, matched: 0, discrepancies: [] });
    t.equal((await cli(['backend', 'reconcile', '--date', '20261331'], env)).status, 2);
    // The timer's catch-up: the days up to yesterday, each reconciled (none with trades here: all clean).
    const catchUp = await cli(['backend', 'reconcile', '--days', '3'], env);
    t.equal(catchUp.status, 0, catchUp.stdout + catchUp.stderr);
    t.equal((catchUp.stdout.match(/^reconciliation of /gm) ?? []).length, 3, 'three days, one report each');
    t.match(catchUp.stdout, new RegExp(`reconciliation of ${yesterday.slice(0, 4)}-${yesterday.slice(4, 6)}-${yesterday.slice(6)} `), 'yesterday the last');
    t.equal((await cli(['backend', 'reconcile', '--days', '0'], env)).status, 2);
    t.equal((await cli(['backend', 'reconcile', '--days', '2', '--date', today], env)).status, 2);
    const unset = { ...env, SCANBOX_MCH_ID: '' };
    t.equal((await cli(['backend', 'reconcile', '--date', today], unset)).status, 2, 'no merchant configuration');
    const nowhere = await cli(['backend', 'reconcile', '--date', today], { ...env, SCANBOX_BACKEND_DB: join(dir, 'typo', 'backend.db') });
    t.equal(nowhere.status, 2, 'no backend journal: nothing to reconcile against, and none made');
    t.match(nowhere.stdout, /no backend journal at /);
    // WeChat Pay's own rule: today's bill is made from 09:00 tomorrow.
    const strict = await GatewaySimulator.start({ ...MERCHANT });
    t.teardown(() => strict.close());
    const notReady = await cli(['backend', 'reconcile', '--date', today], backendEnv(strict, join(dir, 'strict'), dbPath));
    t.equal(notReady.status, 3, notReady.stdout + notReady.stderr);
    t.match(notReady.stdout, /not ready yet/);
  });
});

let id = 0;
function call(deviceId: string, c: Partial<CallRecord> & Pick<CallRecord, 'call' | 'outcome' | 'at'>): CallRecord {
  return { id: ++id, deviceId, outTradeNo: null, outRefundNo: null, code: null, state: null, amountFen: null, ms: 1, paidAt: null, ...c };
}

t.test('what only the backend journal shows: hand-made days', async (t) => {
  const date = '20261202';
  const { startMs, endMs } = dayBounds(date, 'Asia/Shanghai');
  const noon = startMs + 12 * 3600_000;
  const boxes = [{ deviceId: 'BOXA', serial: 'x', notAfter: 0, enrolledAt: 0, revokedAt: null, lastSeenAt: null, calls: 0, errors: 0, maxAmountFen: null, refunds: null }];
  const entry = (outTradeNo: string, tradeState: string, orderFen: number, extra: Partial<{ outRefundNo: string; refundFen: number }> = {}) => ({
    deviceInfo: 'BOXA',
    outTradeNo,
    transactionId: '4200000000000000000000000001',
    tradeState,
    attach: '',
    orderFen,
    outRefundNo: extra.outRefundNo ?? '0',
    refundFen: extra.refundFen ?? 0,
  });
  const run = (calls: CallRecord[], entries: ReturnType<typeof entry>[]) => reconcileBackend({ date, entries, boxes, calls });

  const killed = [
    call('BOXA', { call: 'micropay', outTradeNo: 'BOXA00000001', outcome: 'sent', amountFen: 900, at: noon }),
    call('BOXA', { call: 'reverse', outTradeNo: 'BOXA00000001', outcome: 'success', state: 'REVERSED', at: noon + 20_000 }),
  ];
  t.match(run(killed, [entry('BOXA00000001', 'REVOKED', 900)]), { matched: 1, discrepancies: [] }, 'the backend killed in the micropay, the box reversed it: REVOKED matches');
  const unresolved = run(killed.slice(0, 1), [entry('BOXA00000001', 'SUCCESS', 900)]).discrepancies;
  t.equal(unresolved.length, 1);
  t.match(unresolved[0], { kind: 'CHARGED_NOT_RECORDED', state: 'unknown', what: /no verified paid answer for it \(last: micropay sent\)/ }, 'killed in the micropay and never resolved through the backend: kept money it cannot account for');
  t.same(run(killed.slice(0, 1), []).discrepancies, [], 'and not in the bill: nothing kept, nothing to say');

  const recall = [
    call('BOXA', { call: 'micropay', outTradeNo: 'BOXA00000002', outcome: 'success', state: 'SUCCESS', amountFen: 300, at: noon }),
    call('BOXA', { call: 'reverse', outTradeNo: 'BOXA00000002', outcome: 'success', state: 'RECALL', at: noon + 1000 }),
  ];
  t.match(run(recall, [entry('BOXA00000002', 'SUCCESS', 300)]), { matched: 1, discrepancies: [] }, 'recall=Y is no reverse: still paid');
  const missing = run(recall, []).discrepancies;
  t.equal(missing.length, 1);
  t.match(missing[0], { kind: 'PAID_NOT_IN_BILL', out_trade_no: 'BOXA00000002', backend_fen: 300 });

  const late = [
    call('BOXA', { call: 'micropay', outTradeNo: 'BOXA00000003', outcome: 'success', state: 'SUCCESS', amountFen: 300, at: noon }),
    call('BOXA', { call: 'reverse', outTradeNo: 'BOXA00000003', outcome: 'success', state: 'REVERSED', at: endMs + 3600_000 }),
  ];
  t.match(run(late, [entry('BOXA00000003', 'SUCCESS', 300)]), { matched: 1, discrepancies: [] }, 'reversed after the bill was made');

  // Begun 2 s before midnight, paid (time_end) 3 s after: the bill of the next day has it, this day's has not.
  const midnight = [
    call('BOXA', { call: 'micropay', outTradeNo: 'BOXA00000009', outcome: 'business', code: 'USERPAYING', amountFen: 700, at: endMs - 2000 }),
    call('BOXA', { call: 'orderquery', outTradeNo: 'BOXA00000009', outcome: 'success', state: 'SUCCESS', paidAt: endMs + 3000, at: endMs + 4000 }),
  ];
  t.same(run(midnight, []).discrepancies, [], 'dated by WeChat Pay\'s payment time: not missing from the day it was begun in');
  const nextDay = reconcileBackend({ date: '20261203', entries: [entry('BOXA00000009', 'SUCCESS', 700)], boxes, calls: midnight });
  t.match(nextDay, { matched: 1, discrepancies: [] }, 'and matched on the day it was paid');
  const undated = midnight.map((c) => ({ ...c, paidAt: null }));
  t.equal(run(undated, []).discrepancies[0]?.kind, 'PAID_NOT_IN_BILL', 'without the payment time (a journal from before) the start dates it, as before');

  const refused = [call('BOXA', { call: 'micropay', outTradeNo: 'BOXA00000004', outcome: 'refused', code: 'AMOUNT_LIMIT', amountFen: 5000, at: noon })];
  t.same(
    run(refused, [entry('BOXA00000004', 'SUCCESS', 5000)]).discrepancies.map((d) => [d.kind, d.box]),
    [['UNKNOWN_ORDER', 'BOXA']],
    'a call the backend refused never went upstream',
  );

  const refunds = [
    call('BOXA', { call: 'micropay', outTradeNo: 'BOXA00000005', outcome: 'success', state: 'SUCCESS', amountFen: 1000, at: noon }),
    call('BOXA', { call: 'refund', outTradeNo: 'BOXA00000005', outRefundNo: 'BOXA0000R001', outcome: 'business', code: 'NOTENOUGH', amountFen: 200, at: noon + 1 }),
    call('BOXA', { call: 'refund', outTradeNo: 'BOXA00000005', outRefundNo: 'BOXA0000R002', outcome: 'unknown', code: 'TIMEOUT', amountFen: 300, at: noon + 2 }),
    call('BOXA', { call: 'refundquery', outRefundNo: 'BOXA0000R002', outcome: 'success', state: 'PROCESSING', at: noon + 3 }),
  ];
  const bill = [entry('BOXA00000005', 'SUCCESS', 1000), entry('BOXA00000005', 'REFUND', 1000, { outRefundNo: 'BOXA0000R001', refundFen: 200 })];
  t.same(run(refunds, bill).discrepancies.map((d) => [d.kind, d.out_refund_no, d.state]).sort(), [
    ['REFUND_MISMATCH', 'BOXA0000R001', 'refused'],
    ['REFUND_MISMATCH', 'BOXA0000R002', 'accepted'],
  ], 'a refund WeChat Pay refused in its answer is in the bill; one accepted (found by refundquery) is not');
});
