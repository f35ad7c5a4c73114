import { execFile } from 'node:child_process';
import Database from 'better-sqlite3';
import t from 'tap';
import { Journal } from '../../src/journal/journal.js';
import { MIGRATIONS, SCHEMA_VERSION } from '../../src/journal/migrations.js';
import { tempDir } from '../helpers/world.js';
import { fetchDayBill } from '../../src/app/fetch-bill.js';
import { catchUpPlan, oldestNotReconciled, reconcileDays, CATCH_UP_DAYS } from '../../src/books/catch-up.js';
import { VirtualClock } from '../../src/clock.js';
import { createLogger } from '../../src/log.js';
import { sell } from '../helpers/faults.js';
import { FAILURE_XML } from '../helpers/bills.js';
import { DEVICE_ID, createWorld } from '../helpers/world.js';

/**
 * The catch-up of `scanbox reconcile` without --date over several business days, on a real journal (sales and
 * a refund through the engines, over HTTPS, against the simulator) with the clock injected: days with sales,
 * a day with neither sales nor a bill, a bill cut short, a bill not made yet and a date WeChat Pay refuses each
 * stop the run at that day (exit 3) and are noted with why; the next run goes on from there, oldest first.
 */

const CLI = new URL('../../dist/cli.js', import.meta.url).pathname;

/** `scanbox status` on a journal, as a technician runs it (no daemon: read from the journal). */
function statusOf(dbPath: string): Promise<string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined && !key.startsWith('SCANBOX_')) env[key] = value;
  env.SCANBOX_DB = dbPath;
  env.RUNTIME_DIRECTORY = tempDir('scanbox-status-');
  return new Promise((resolve) => execFile(process.execPath, [CLI, 'status'], { env, encoding: 'utf8', timeout: 30_000 }, (_e, stdout) => resolve(stdout)));
}

/** 10:30 China time on a day of 2026-11/12. */
const at = (month: number, day: number, hour = 10, minute = 30): number => Date.UTC(2026, month - 1, day, hour - 8, minute);

t.test('a box off for days catches up, oldest first, and stops at the first bill not available', async (t) => {
  const clock = new VirtualClock(at(11, 29, 10, 0));
  const w = await createWorld({ clock });
  t.teardown(() => w.close());
  const logLines: string[] = [];
  const log = createLogger({ level: 'debug', write: (line) => void logLines.push(line) });

  // 29 Nov: two sales and a refund. 30 Nov: nothing. 1 Dec: one sale. Then the box is off until 4 Dec.
  const a1 = (await sell(w, null, { ref: 'D1-1', amount: 1200 })).sale;
  await sell(w, null, { ref: 'D1-2', amount: 3400 });
  const created = w.refunds.request({ rid: 'D1-R', ref: 'D1-1', amountFen: 200, source: 'technician' });
  if (created.kind !== 'created') throw new Error(created.kind);
  await w.refunds.drive(created.refund.id);
  clock.set(at(12, 1, 15, 0));
  const c1 = (await sell(w, null, { ref: 'D3-1', amount: 990 })).sale;
  clock.set(at(12, 4, 10, 30));

  const run = async () => {
    const out: string[] = [];
    const plan = catchUpPlan(w.journal, clock.now());
    const result = await reconcileDays({
      journal: w.journal,
      deviceId: DEVICE_ID,
      days: plan.days,
      fetch: (date) => fetchDayBill(w.client, date, log),
      now: () => clock.now(),
      log,
      out: (lines) => void out.push(...lines),
      json: false,
    });
    t.comment(`catch-up at ${new Date(clock.now()).toISOString()}:\n${out.join('\n')}`);
    return { plan, result, out: out.join('\n') };
  };

  t.same(catchUpPlan(w.journal, clock.now()).days, ['20261129', '20261130', '20261201', '20261202', '20261203'], 'from the first day through yesterday');

  // Run 1: the bill of 1 Dec comes cut short (its one row lost, the summary still counting it).
  const whole = await w.client.downloadbill({ billDate: '20261201' });
  if (whole.kind !== 'bill') throw new Error(whole.kind);
  const lines = whole.text.split('\r\n');
  w.sim.serveBill('20261201', [lines[0], ...lines.slice(2)].join('\r\n'));
  const first = await run();
  t.equal(first.result.exit, 3, 'stopped: the timer tries again');
  t.same(first.result.results.map((r) => [r.date, r.matched, r.discrepancies.length]), [
    ['20261129', 3, 0],
    ['20261130', 0, 0],
  ]);
  t.match(first.out, /the bill of 20261201 cannot be read: line 3, column 总交易单数: the bill is not whole: its summary says 1 row\(s\), its rows are 0/);
  t.match(first.out, /not reconciled: 20261201 and the 2 day\(s\) after it/);
  t.match(first.out, /reconciliation of 2026-11-30 .*No Bill Exist/);
  t.same([...w.journal.reconciledDays('20261101', '20261231')].sort(), ['20261129', '20261130'], 'kept in the journal');
  t.match(w.journal.pendingReconciliation('20261201'), { tries: 1, reason: /not whole/ });
  t.match(oldestNotReconciled(w.journal, clock.now()), { day: '20261201', why: /not whole.*\(tried 1 time\) \(and 2 later days\)/ });
  t.ok(logLines.some((l) => l.startsWith('<3>the bill cannot be read')), 'logged at error level');
  // `scanbox status` on this journal (its clock is the system's, days after these): the oldest day and why.
  const status = await statusOf(w.dbPath);
  t.match(status, /^oldest day not reconciled: 20261201: the bill of 20261201 cannot be read: .*not whole.* \(tried 1 time\) \(and \d+ later days\)$/m);

  // Run 2, half an hour later: the bill is whole now; 2 Dec is not made yet (Bill Creating).
  w.sim.clearBillChanges();
  w.sim.serveBill('20261202', FAILURE_XML.creating);
  clock.set(at(12, 4, 11, 0));
  const second = await run();
  t.equal(second.result.exit, 3);
  t.same(second.plan.days, ['20261201', '20261202', '20261203'], 'only the days not reconciled, oldest first');
  t.same(second.result.results.map((r) => [r.date, r.matched, r.discrepancies.length]), [['20261201', 1, 0]]);
  t.match(second.out, /the bill of 20261202 is not ready yet \(Bill Creating\)/);
  t.equal(w.journal.pendingReconciliation('20261201'), null, 'reconciled: no longer pending');

  // Run 3: WeChat Pay refuses the date of 3 Dec (invalid bill_date, error_code 20001): not available either.
  w.sim.clearBillChanges();
  w.sim.serveBill('20261203', FAILURE_XML.invalidDate);
  const third = await run();
  t.equal(third.result.exit, 3);
  t.same(third.result.results.map((r) => r.date), ['20261202']);
  t.match(third.out, /the bill of 20261203 could not be fetched \(RETURN_FAIL: return_code=FAIL return_msg=invalid bill_date error_code=20001\)/);

  // Run 4: 3 Dec's bill has a sale of this box the journal does not know: reconciled, with its discrepancy.
  w.sim.clearBillChanges();
  w.sim.plantBillRow({ at: at(12, 3, 12, 0), outTradeNo: `${DEVICE_ID}ZZZZ00000777`, deviceInfo: DEVICE_ID, settlementFen: 500, attach: 'GHOST' });
  const fourth = await run();
  t.equal(fourth.result.exit, 1, 'discrepancies');
  t.same(fourth.result.results.map((r) => [r.date, r.discrepancies.map((d) => d.kind)]), [['20261203', ['UNKNOWN_ORDER']]]);
  t.equal(oldestNotReconciled(w.journal, clock.now()), null, 'every day through yesterday is reconciled');

  // Run 5: nothing left.
  const fifth = await run();
  t.same([fifth.plan.days, fifth.result.exit], [[], 0]);
  t.same([...w.journal.reconciledDays('20261101', '20261231')].sort(), ['20261129', '20261130', '20261201', '20261202', '20261203']);
  void a1;
  void c1;
});

t.test('the window: at most 89 days back, the older days counted as beyond reach; a journal without sales has none', async (t) => {
  const clock = new VirtualClock(at(11, 29, 10, 0));
  const w = await createWorld({ clock });
  t.teardown(() => w.close());
  t.same(catchUpPlan(w.journal, clock.now()), { days: [], first: null, oldest: '20260901', last: '20261128', beyond: 0 });
  await sell(w, null, { ref: 'OLD-1', amount: 100 });
  t.same(catchUpPlan(w.journal, clock.now()).days, [], 'the journal began today: nothing before tomorrow');
  clock.set(at(11, 29, 10, 0) + 100 * 86_400_000);
  const plan = catchUpPlan(w.journal, clock.now());
  t.equal(plan.days.length, CATCH_UP_DAYS, '89 days: today - 89 through yesterday');
  t.equal(plan.days[0], plan.oldest);
  t.equal(plan.beyond, 11, 'the first 11 days of the journal are past reach');
  t.equal(plan.last, '20270308');
});

t.test('migration 4 on a journal of version 3: its reconciliations kept, days not reconciled noted from then on', async (t) => {
  const path = `${tempDir()}/v3.db`;
  const db = new Database(path);
  for (const step of MIGRATIONS.slice(0, 3)) step(db);
  db.pragma('user_version = 3');
  db.prepare('INSERT INTO reconciliations (day, at, matched, discrepancies, result) VALUES (?, ?, ?, ?, ?)').run('20261128', 1, 2, 0, '{}');
  db.close();
  const journal = Journal.open(path, { deviceId: DEVICE_ID, clock: new VirtualClock() });
  t.teardown(() => journal.close());
  t.equal(journal.pragmas().userVersion, SCHEMA_VERSION);
  t.equal(SCHEMA_VERSION, 4);
  t.same([...journal.reconciledDays('20261101', '20261130')], ['20261128']);
  journal.notReconciled('20261129', 5, 'the bill of 20261129 is not ready yet');
  journal.notReconciled('20261129', 9, 'the bill of 20261129 could not be fetched');
  t.same(journal.pendingReconciliation('20261129'), { day: '20261129', since: 5, at: 9, tries: 2, reason: 'the bill of 20261129 could not be fetched' });
  journal.saveReconciliation({ day: '20261129', at: 10, matched: 0, discrepancies: 0, result: '{}' });
  t.equal(journal.pendingReconciliation('20261129'), null, 'kept: no longer pending, in the same transaction');
});
