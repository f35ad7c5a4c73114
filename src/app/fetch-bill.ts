import { messageOf } from '../errors.js';
import type { Logger } from '../log.js';
import { print } from './table.js';
import { BillError } from '../wechatpay/bill.js';
import type { WechatPayClient } from '../wechatpay/client.js';
import { entriesOfBill, type BillEntry } from '../books/reconcile.js';

/**
 * A day's bill fetched and read as reconciliation reads it, for the box's `scanbox reconcile` and the backend's
 * `scanbox backend reconcile` alike: the entries (none for No Bill Exist), or the exit code when there is
 * nothing to reconcile (3: not made yet, or WeChat Pay not reachable now; 1: a bill that cannot be read).
 * What went wrong is printed and logged here.
 */
export async function fetchBillEntries(
  client: Pick<WechatPayClient, 'downloadbill'>,
  date: string,
  log: Logger,
): Promise<{ entries: BillEntry[] } | { exit: number }> {
  try {
    const outcome = await client.downloadbill({ billDate: date, billType: 'ALL', gzip: true });
    if (outcome.kind === 'not_ready') {
      print(`the bill of ${date} is not ready yet (${outcome.message}): WeChat Pay makes it from 09:00 China time the next day; try after 10:00`);
      log.warning('bill not ready yet; reconcile again later', { date });
      return { exit: 3 };
    }
    if (outcome.kind === 'unknown') {
      print(`the bill of ${date} could not be fetched (${outcome.failure}: ${outcome.message}); try again later`);
      log.warning('bill could not be fetched; reconcile again later', { date, failure: outcome.failure });
      return { exit: 3 };
    }
    if (outcome.kind === 'no_bill') return { entries: [] };
    const read = entriesOfBill(outcome.text);
    log.info('bill fetched', { date, rows: read.rows, bytes: outcome.bytes, gzip: outcome.gzip ? 'yes' : 'no', ms: outcome.ms });
    return { entries: read.entries };
  } catch (error) {
    print(error instanceof BillError ? `the bill of ${date} cannot be read: ${error.message}` : `fetching the bill of ${date} failed: ${messageOf(error)}`);
    log.error('reconciliation failed', { date, error: messageOf(error) });
    return { exit: 1 };
  }
}
