import { parseDayArgs } from '../app/args.js';
import { fetchBillEntries } from '../app/fetch-bill.js';
import { upstreamFor } from '../app/parts.js';
import { print } from '../app/table.js';
import { BILL_TIME_ZONE, formatReconciliation, reconcile, type ReconcileResult } from '../books/reconcile.js';
import { yesterday } from '../business-day.js';
import { clockTrusted, systemClock } from '../clock.js';
import { loadConfig } from '../config.js';
import { messageOf } from '../errors.js';
import { Journal } from '../journal/journal.js';
import { createLogger } from '../log.js';
import { CertificateError } from '../wechatpay/certificate.js';

/**
 * `scanbox reconcile [--date YYYYMMDD] [--json]`: WeChat Pay's bill of that day (default: yesterday, China
 * time) matched row by row against the journal. It never refuses a date by its own clock: WeChat Pay says
 * whether the bill exists. The result is kept in the journal (`scanbox status` shows the last one) and every
 * discrepancy is logged at error level. scanbox-reconcile.timer runs it every morning.
 *
 * Exit codes: 0 all matched, 1 discrepancies found (or the bill could not be read), 2 configuration or usage,
 * 3 the bill is not available yet (WeChat Pay is still making it, or cannot be reached now): try again later.
 */

const USAGE = 'usage: scanbox reconcile [--date YYYYMMDD] [--json]   (default: yesterday, China time)';

export async function reconcileCommand(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const parsed = parseDayArgs(args);
  if (typeof parsed === 'string') {
    process.stderr.write(`${parsed}\n${USAGE}\n`);
    return 2;
  }
  const loaded = loadConfig({ env });
  if (!loaded.ok) {
    for (const error of loaded.errors) print(`FAIL ${error}`);
    print(`configuration has ${loaded.errors.length} problem(s): cannot ask WeChat Pay for the bill without it`);
    return 2;
  }
  const config = loaded.config;
  // What a timer's run leaves in the system journal: one line per event, discrepancies at error level.
  const log = createLogger({ level: config.logLevel, write: (line) => void process.stderr.write(line + '\n') });
  const now = systemClock.now();
  const date = parsed.date ?? yesterday(now, BILL_TIME_ZONE);
  if (!clockTrusted(now)) {
    print('the clock is not synchronised: no WeChat Pay call until it is (scanbox selftest)');
    return 3;
  }
  let client;
  try {
    client = upstreamFor(config, log);
  } catch (error) {
    if (error instanceof CertificateError) {
      print(`configuration: merchant certificate: ${error.message}`);
      return 2;
    }
    throw error;
  }
  let fetched;
  try {
    fetched = await fetchBillEntries(client, date, log);
  } finally {
    await client.close();
  }
  if ('exit' in fetched) return fetched.exit;
  const entries = fetched.entries;

  let journal: Journal;
  try {
    journal = Journal.open(config.dbPath, { deviceId: config.deviceId, clock: systemClock });
  } catch (error) {
    print(`journal cannot be opened: ${messageOf(error)}`);
    return 1;
  }
  let result: ReconcileResult;
  try {
    result = reconcile({ date, deviceId: config.deviceId, entries, journal });
    journal.saveReconciliation({
      day: date,
      at: systemClock.now(),
      matched: result.matched,
      discrepancies: result.discrepancies.length,
      result: JSON.stringify(result),
    });
  } catch (error) {
    print(`reconciliation failed: ${messageOf(error)}`);
    return 1;
  } finally {
    journal.close();
  }
  for (const d of result.discrepancies) {
    log.error(`reconciliation: ${d.kind}: ${d.what}; ${d.to_do}`, { date, out_trade_no: d.out_trade_no, ref: d.ref ?? '-', ...(d.out_refund_no ? { out_refund_no: d.out_refund_no } : {}) });
  }
  log.info('reconciliation done', { date, matched: result.matched, discrepancies: result.discrepancies.length });
  print(parsed.json ? JSON.stringify({ date: result.date, matched: result.matched, discrepancies: result.discrepancies }) : formatReconciliation(result));
  return result.discrepancies.length === 0 ? 0 : 1;
}
