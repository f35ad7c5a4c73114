import { execFile } from 'node:child_process';
import t from 'tap';
import { businessDay } from '../../src/business-day.js';
import { Rig } from '../../src/simulator/rig.js';

/**
 * `scanbox reconcile` beside the real daemon: sales through the register and scanner ptys, the simulator's own
 * bill of the day over HTTPS (built from its ledger, as WeChat Pay's is), the journal, and planted differences.
 * A clean day has 0 discrepancies; each planted one is found with its kind; `scanbox status` shows the result.
 */

const CLI = new URL('../../dist/cli.js', import.meta.url).pathname;
let n = 0;
const code = (): string => `14${String(process.pid % 100000).padStart(5, '0')}6${String(++n).padStart(10, '0')}`;

function cli(rig: Rig, args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined && !key.startsWith('SCANBOX_')) env[key] = value;
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...env, ...rig.env }, encoding: 'utf8', timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ status: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr });
    });
  });
}

t.test('reconcile the day against the simulator bill', async (t) => {
  // The bill of today, as it stands now (WeChat Pay's would be ready at 09:00 tomorrow).
  const rig = await Rig.start({
    env: { SCANBOX_REFUNDS: 'register', SCANBOX_USERPAYING_POLL_S: '1', SCANBOX_USERPAYING_TIMEOUT_S: '5' },
    simulator: { billReadyAfterMs: -86_400_000 },
  });
  t.teardown(() => rig.close());
  await rig.startDaemon();
  const reg = rig.register;
  const sale = async (ref: string, amount: number, scenario?: Parameters<Rig['sim']['setScenario']>[1]): Promise<string> => {
    const from = reg.mark;
    reg.send(`PAY ${amount} ${ref}`);
    await reg.next(`ACK ${ref}`, 5000, from);
    const payment = code();
    if (scenario) rig.sim.setScenario(payment, scenario);
    rig.scanner.send(payment);
    return reg.next(new RegExp(`^(PAID|FAILED) ${ref} `), 30000, from);
  };
  const otnOf = (line: string): string => line.split(' ')[2]!;
  const paid1 = otnOf(await sale('RC-1', 1200));
  const paid2 = otnOf(await sale('RC-2', 3400));
  t.match(await sale('RC-3', 500, { outcome: 'userpaying' }), /^FAILED RC-3 TIMEOUT_REVERSED/);
  const from = reg.mark;
  reg.send('REFUND RC-2 400 RCR-1');
  t.match(await reg.next(/^(REFUNDED|FAILED) RCR-1/, 15000, from), /^REFUNDED /);
  const today = businessDay(Date.now(), 'Asia/Shanghai');

  await t.test('a clean day: every row matched, exit 0', async (t) => {
    const run = await cli(rig, ['reconcile', '--date', today, '--json']);
    t.equal(run.status, 0, run.stdout + run.stderr);
    const result = JSON.parse(run.stdout) as { date: string; matched: number; discrepancies: unknown[] };
    t.same(result.discrepancies, []);
    t.equal(result.date, today);
    t.equal(result.matched, 3, 'two sales and the refund (the reversed order never charged: not in the bill)');
    t.match(run.stderr, /<6>reconciliation done .*discrepancies=0/);
  });

  await t.test('each planted difference found once with its kind; exit 1; kept for status; logged at error level', async (t) => {
    const journalOtn = (ref: string) => rig.sim.ledger().find((e) => e.attach === ref)!.outTradeNo;
    const reversed = journalOtn('RC-3');
    const at = Date.now();
    // A charge WeChat Pay kept although the box reversed the order (a reversal it did not honour).
    rig.sim.plantBillRow({ at, outTradeNo: reversed, tradeState: 'SUCCESS', deviceInfo: 'BENCH01', orderFen: 500, settlementFen: 500, attach: 'RC-3' });
    // A paid sale missing from the bill.
    rig.sim.dropFromBill(paid1);
    // An amount that differs.
    rig.sim.amendBillRow(paid2, { orderFen: 3300, settlementFen: 3300 });
    // A sale of this device the journal does not have.
    rig.sim.plantBillRow({ at, outTradeNo: 'BENCH01ZZZZ00000999', tradeState: 'SUCCESS', deviceInfo: 'BENCH01', orderFen: 777, settlementFen: 777, attach: 'GHOST' });
    // A refund the journal lacks.
    rig.sim.plantBillRow({
      at,
      outTradeNo: paid2,
      tradeState: 'REFUND',
      deviceInfo: 'BENCH01',
      outRefundNo: 'BENCH01ZZZZR00000999',
      refundId: '50300000000000000000000000999',
      refundFen: 100,
      requestedRefundFen: 100,
      settlementFen: 0,
      orderFen: 3400,
    });
    const run = await cli(rig, ['reconcile', '--date', today, '--json']);
    t.equal(run.status, 1, run.stdout + run.stderr);
    const result = JSON.parse(run.stdout) as { discrepancies: { kind: string; out_trade_no: string; ref: string | null }[] };
    t.same(
      result.discrepancies.map((d) => [d.kind, d.out_trade_no]).sort(),
      [
        ['AMOUNT_MISMATCH', paid2],
        ['CHARGED_NOT_REPORTED', reversed],
        ['PAID_NOT_IN_BILL', paid1],
        ['REFUND_MISMATCH', paid2],
        ['UNKNOWN_ORDER', 'BENCH01ZZZZ00000999'],
      ].sort(),
    );
    t.match(result.discrepancies.find((d) => d.kind === 'UNKNOWN_ORDER'), { ref: 'GHOST' }, 'the REF from the bill attach');
    t.equal(run.stderr.split('\n').filter((l) => l.startsWith('<3>reconciliation: ')).length, 5, 'each at error level');
    const text = await cli(rig, ['reconcile', '--date', today]);
    t.match(text.stdout, /CHARGED_NOT_REPORTED [^\n]*\n[^\n]*\n {2}to do: [^\n]*refund it in the merchant platform/);
    const status = await cli(rig, ['status']);
    t.match(status.stdout, new RegExp(`last reconciliation: ${today} .*: \\d+ matched, 5 discrepancies`));
    t.match(status.stdout, /UNKNOWN_ORDER +BENCH01ZZZZ00000999 +GHOST/);
    rig.sim.clearBillChanges();
  });

  await t.test('a day without trades and a bill not made yet', async (t) => {
    const empty = await cli(rig, ['reconcile', '--date', '20261101', '--json']);
    t.equal(empty.status, 0, empty.stdout + empty.stderr);
    t.same(JSON.parse(empty.stdout), { date: '20261101', matched: 0, discrepancies: [] });
    const usage = await cli(rig, ['reconcile', '--date', '20261331']);
    t.equal(usage.status, 2);
  });
});

t.test('the bill not ready yet (before 09:00 the next day): exit 3, nothing kept', async (t) => {
  const rig = await Rig.start();
  t.teardown(() => rig.close());
  const today = businessDay(Date.now(), 'Asia/Shanghai');
  const run = await cli(rig, ['reconcile', '--date', today]);
  t.equal(run.status, 3, run.stdout + run.stderr);
  t.match(run.stdout, /not ready yet/);
  t.notMatch(run.stdout + run.stderr, /reconciliation done/, 'nothing was reconciled, nothing kept');
});
