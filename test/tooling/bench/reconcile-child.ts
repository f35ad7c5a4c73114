import { readFileSync } from 'node:fs';
import { entriesOfBill, reconcile } from '../../../src/books/reconcile.js';
import { systemClock } from '../../../src/clock.js';
import { Journal } from '../../../src/journal/journal.js';

/**
 * One reconciliation, in a process of its own so that its peak memory is its own:
 * `node [the unit's flags] reconcile-child.js BILL_FILE JOURNAL DEVICE_ID YYYYMMDD` reads the bill's text (as
 * the client hands it to `scanbox reconcile`: a string), then does what the command does with it, in the same
 * order: parseBill, the rows as BillEntry, Journal.open, reconcile(). Prints one JSON object: the times of
 * each step, VmHWM (the peak resident set, kernel-kept) and VmRSS read from /proc/self/status at the end, and
 * the result's counts and discrepancies.
 */

const [billPath, dbPath, deviceId, date] = process.argv.slice(2);
if (!billPath || !dbPath || !deviceId || !date) {
  process.stderr.write('usage: reconcile-child.js BILL_FILE JOURNAL DEVICE_ID YYYYMMDD\n');
  process.exit(2);
}

const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? NaN);
/** VmRSS (RssAnon + RssFile) and the V8 heap at each step, in kB, for the report. */
const steps: Record<string, { rss: number; anon: number; file: number; heap: number; hwm: number }> = {};
const step = (name: string): void => {
  steps[name] = { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile'), heap: Math.round(process.memoryUsage().heapUsed / 1024), hwm: kb('VmHWM') };
};

step('start');
const rssAtStart = kb('VmRSS');
const text = readFileSync(billPath, 'utf8');
step('text read');
const t0 = performance.now();
// As src/commands/reconcile.ts reads them.
const { entries } = entriesOfBill(text);
const t1 = performance.now();
step('parsed');
const journal = Journal.open(dbPath, { deviceId, clock: systemClock });
const t2 = performance.now();
step('journal open');
const result = reconcile({ date, deviceId, entries, journal });
const t3 = performance.now();
step('reconciled');
journal.close();
process.stdout.write(
  JSON.stringify({
    chars: text.length,
    rows: entries.length,
    parseMs: t1 - t0,
    openMs: t2 - t1,
    reconcileMs: t3 - t2,
    rssAtStartKb: rssAtStart,
    hwmKb: kb('VmHWM'),
    rssKb: kb('VmRSS'),
    steps,
    matched: result.matched,
    mine: result.rows.mine,
    others: result.rows.others,
    discrepancies: result.discrepancies.map((d) => ({ kind: d.kind, out_trade_no: d.out_trade_no, out_refund_no: d.out_refund_no })),
  }) + '\n',
);
