import { execFile } from 'node:child_process';
import t from 'tap';
import { businessDay } from '../../src/business-day.js';
import { systemClock, type Clock } from '../../src/clock.js';
import { reconcileCommand } from '../../src/commands/reconcile.js';
import { Rig } from '../../src/simulator/rig.js';
import { WechatPayClient } from '../../src/wechatpay/client.js';
import { billText, FAILURE_XML, truncated, type FixtureRow } from '../helpers/bills.js';

/**
 * Bills of our own in every real layout (test/helpers/bills.ts), served by the simulator over HTTPS in place of
 * its own, through `scanbox reconcile` against the real daemon's journal (sales through the register and
 * scanner ptys, a refund through the register line): what each layout gives, exit code and output. Then a
 * catch-up over several days on the same journal, with the command's clock moved days ahead (no sleeping).
 */

const CLI = new URL('../../dist/cli.js', import.meta.url).pathname;
let n = 0;
const code = (): string => `14${String(process.pid % 100000).padStart(5, '0')}7${String(++n).padStart(10, '0')}`;

function cli(rig: Rig, args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined && !key.startsWith('SCANBOX_')) env[key] = value;
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...env, ...rig.env }, encoding: 'utf8', timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ status: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr });
    });
  });
}

/** The simulator's clock and the command's, moved ahead by hand. */
class ShiftedClock implements Clock {
  shift = 0;
  now(): number {
    return Date.now() + this.shift;
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return systemClock.sleep(ms, signal);
  }
}

t.test('every layout through scanbox reconcile on the real daemon, and a catch-up over several days', async (t) => {
  const clock = new ShiftedClock();
  const rig = await Rig.start({ env: { SCANBOX_REFUNDS: 'register' }, simulator: { clock, billReadyAfterMs: -86_400_000 } });
  t.teardown(() => rig.close());
  await rig.startDaemon();
  const reg = rig.register;
  const sale = async (ref: string, amount: number): Promise<string> => {
    const from = reg.mark;
    reg.send(`PAY ${amount} ${ref}`);
    await reg.next(`ACK ${ref}`, 5000, from);
    rig.scanner.send(code());
    const line = await reg.next(new RegExp(`^(PAID|FAILED) ${ref} `), 30000, from);
    t.match(line, /^PAID /);
    return line.split(' ')[2]!;
  };
  const otn1 = await sale('LY-1', 990);
  const otn2 = await sale('LY-2', 4500);
  const from = reg.mark;
  reg.send('REFUND LY-2 47 LYR-1');
  const refunded = await reg.next(/^(REFUNDED|FAILED) LYR-1/, 15000, from);
  t.match(refunded, /^REFUNDED /);
  const outRefundNo = refunded.split(' ')[4]!;
  const today = businessDay(Date.now(), 'Asia/Shanghai');
  const iso = `${today.slice(0, 4)}-${today.slice(4, 6)}-${today.slice(6)}`;
  const rows: FixtureRow[] = [
    { time: `${iso} 09:15:02`, outTradeNo: otn1, state: 'SUCCESS', amountFen: 990, deviceInfo: 'BENCH01', attach: 'LY-1' },
    { time: `${iso} 09:16:40`, outTradeNo: otn2, state: 'SUCCESS', amountFen: 4500, deviceInfo: 'BENCH01', attach: 'LY-2' },
    // Another box of the merchant: in the bill, not looked at.
    { time: `${iso} 10:00:00`, outTradeNo: 'OTHERBOX00000001', state: 'SUCCESS', amountFen: 1234, deviceInfo: 'OTHERBOX', attach: 'X' },
    { time: `${iso} 16:33:45`, outTradeNo: otn2, state: 'REFUND', amountFen: 4500, deviceInfo: 'BENCH01', attach: 'LY-2', outRefundNo, refundFen: 47 },
  ];
  // First a catch-up: the command's clock (and WeChat Pay's) four days ahead; today's sales are then three
  // days old, the days after them had no trade. One of them is not made yet at first. The simulator makes
  // the bills from its ledger.
  clock.shift = 4 * 86_400_000;
  const day = (k: number): string => businessDay(Date.now() + k * 86_400_000, 'Asia/Shanghai');
  const client = new WechatPayClient({
    merchant: { mchId: rig.merchant.mchId, appId: rig.merchant.appId, apiKey: rig.merchant.apiKey, signType: 'HMAC-SHA256' },
    apiBase: rig.sim.origin,
    ca: rig.sim.pki.ca.certPem,
  });
  t.teardown(() => client.close());
  const catchUp = async () => {
    const out: string[] = [];
    const exit = await reconcileCommand([], rig.env, { clock, out: (lines) => void out.push(...lines), client });
    t.comment(`--- scanbox reconcile (catch-up, clock at ${new Date(clock.now()).toISOString()}): exit ${exit}\n${out.join('\n')}`);
    return { exit, out: out.join('\n') };
  };
  rig.sim.serveBill(day(2), FAILURE_XML.creating);
  const first = await catchUp();
  t.equal(first.exit, 3, 'stopped at the day not made yet');
  t.match(first.out, new RegExp(`catching up: 4 day\\(s\\) not reconciled yet`));
  t.match(first.out, /matched: 3/);
  t.match(first.out, new RegExp(`not reconciled: ${day(2)} and the 1 day\\(s\\) after it`));
  rig.sim.clearBillChanges();
  const second = await catchUp();
  t.equal(second.exit, 0, 'the rest reconciled, oldest first');
  t.match(second.out, new RegExp(`catching up: 2 day\\(s\\) not reconciled yet, ${day(2).slice(0, 4)}-${day(2).slice(4, 6)}-${day(2).slice(6)} to`));
  t.match(second.out, /catch-up: 2 of 2 day\(s\) reconciled: 2 all matched, 0 with discrepancies/);
  const third = await catchUp();
  t.equal(third.exit, 0);
  t.match(third.out, /nothing to reconcile: every day from .* through yesterday is reconciled/);
  clock.shift = 0;

  // Then each layout, for today, through the command as the timer runs it.
  type Json = { matched?: number; discrepancies?: { kind: string; out_trade_no: string }[]; not_reconciled?: { date: string; reason: string } };
  /** One run with --json (one process per bill: the machine is shared); `text` as well when asked. */
  const reconcileWith = async (body: string, text = false) => {
    rig.sim.serveBill(today, body);
    const run = await cli(rig, ['reconcile', '--date', today, ...(text ? [] : ['--json'])]);
    t.comment(`--- scanbox reconcile --date ${today}${text ? '' : ' --json'}: exit ${run.status}\n${run.stdout}`);
    return { status: run.status, json: text ? null : (JSON.parse(run.stdout) as Json), stdout: run.stdout };
  };

  const clean: Array<[string, string]> = [
    ["today's ALL, BOM and CRLF", billText('ALL', rows, { bom: true, eol: '\r\n' })],
    ["today's ALL, LF, last line unended, loose summary (4.0, 0.47), full-width colons", billText('ALL', rows, { eol: '\n', finalEol: false, loose: true, fullWidthColons: true })],
    ['legacy ALL, 24 columns, 5-field summary, loose', billText('LEGACY', rows, { bom: true, loose: true, fullWidthColons: true })],
  ];
  for (const [name, body] of clean) {
    const run = await reconcileWith(body);
    t.equal(run.status, 0, `${name}: exit 0`);
    t.same(run.json, { date: today, matched: 3, discrepancies: [] }, `${name}: the two sales and the refund matched`);
  }
  const printed = await reconcileWith(clean[0]![1], true);
  t.match(printed.stdout, /3 row\(s\) of this box, 1 of the merchant's other boxes not looked at\n {2}matched: 3\n {2}discrepancies: 0/);

  for (const successSummary of [4, 5, 7] as const) {
    const run = await reconcileWith(billText('SUCCESS', rows, { successSummary }));
    t.equal(run.status, 1, `SUCCESS with a ${successSummary}-field summary: read; the refund it does not carry is named`);
    t.same(run.json!.discrepancies!.map((d) => [d.kind, d.out_trade_no]), [['REFUND_MISMATCH', otn2]]);
  }

  const refundOnly = await reconcileWith(billText('REFUND', rows, { bom: true, loose: true }));
  t.equal(refundOnly.status, 1, 'REFUND (29 columns): read; the refund matched, the sales it does not carry named');
  t.same(refundOnly.json!.discrepancies!.map((d) => [d.kind, d.out_trade_no]).sort(), [['PAID_NOT_IN_BILL', otn1], ['PAID_NOT_IN_BILL', otn2]].sort());
  t.equal(refundOnly.json!.matched, 1);

  const whole = billText('ALL', rows, { bom: true });
  const before = await cli(rig, ['status']);
  for (const [name, body, message] of [
    ['cut after its rows (no summary)', truncated(whole, 5).atLineEnd, /cannot be read: line 5: the bill ends without its summary .* after 4 row\(s\)/],
    ['cut in the middle of a row', truncated(whole, 3).midLine, /cannot be read: line 4: the row has \d+ values, the header 27 columns/],
    ['a row lost, the summary whole', whole.split('\r\n').filter((_, i) => i !== 2).join('\r\n'), /cannot be read: line 6, column 总交易单数: the bill is not whole: its summary says 4 row\(s\), its rows are 3/],
    ['an amount changed in a row', whole.replace('`45.00,', '`45.10,'), /column 应结订单总金额: the bill is not whole: its summary says 67\.24 yuan, its rows add up to 67\.34 yuan/],
    ['Bill Creating', FAILURE_XML.creating, /not ready yet \(Bill Creating\)/],
    ['invalid bill_date (20001)', FAILURE_XML.invalidDate, /could not be fetched \(RETURN_FAIL: return_code=FAIL return_msg=invalid bill_date error_code=20001\)/],
  ] as const) {
    const run = await reconcileWith(body);
    t.equal(run.status, 3, `${name}: exit 3, tried again later`);
    t.match(run.json, { date: today, not_reconciled: { date: today, reason: message } }, name);
  }
  const said = await reconcileWith(FAILURE_XML.creating, true);
  t.equal(said.stdout.split('\n').filter((l) => /^the bill of /.test(l)).length, 1, 'one line says why');
  const after = await cli(rig, ['status']);
  t.equal(after.stdout.match(/last reconciliation: .*/)?.[0], before.stdout.match(/last reconciliation: .*/)?.[0], 'nothing kept for a bill not whole');

  const noBill = await reconcileWith(FAILURE_XML.noBill);
  t.equal(noBill.status, 1, 'No Bill Exist (20002) against a day with sales: both named as not in the bill');
  t.same(noBill.json!.discrepancies!.map((d) => d.kind), ['PAID_NOT_IN_BILL', 'PAID_NOT_IN_BILL', 'REFUND_MISMATCH']);
  rig.sim.clearBillChanges();
});
