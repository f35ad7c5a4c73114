import { messageOf } from '../errors.js';
import type { Logger } from '../log.js';
import { print } from './table.js';
import { BillError } from '../wechatpay/bill.js';
import type { WechatPayClient } from '../wechatpay/client.js';
import { entriesOfBill, type BillEntry } from '../books/reconcile.js';
import type { DayBill } from '../books/catch-up.js';

/**
 * A day's bill fetched and read as reconciliation reads it, for the box's `scanbox reconcile` and the backend's
 * `scanbox backend reconcile` alike: `bill` when it was whole (its rows agree with its own summary), `no_bill`
 * for No Bill Exist, `unavailable` with one line of why for everything that leaves nothing to reconcile with now
 * (not made yet, WeChat Pay not reachable or answering something else such as invalid bill_date, a bill that
 * cannot be read or is not whole: fetched again next time, never dropped; exit 3).
 */
export async function fetchDayBill(client: Pick<WechatPayClient, 'downloadbill'>, date: string, log: Logger): Promise<DayBill> {
  try {
    const outcome = await client.downloadbill({ billDate: date, billType: 'ALL', gzip: true });
    if (outcome.kind === 'not_ready') {
      log.warning('bill not ready yet; reconcile again later', { date });
      return {
        kind: 'unavailable',
        reason: `the bill of ${date} is not ready yet (${outcome.message}): WeChat Pay makes it from 09:00 China time the next day; try after 10:00`,
      };
    }
    if (outcome.kind === 'unknown') {
      log.warning('bill could not be fetched; reconcile again later', { date, failure: outcome.failure });
      return { kind: 'unavailable', reason: `the bill of ${date} could not be fetched (${outcome.failure}: ${outcome.message}); try again later` };
    }
    if (outcome.kind === 'no_bill') return { kind: 'no_bill' };
    const read = entriesOfBill(outcome.text);
    log.info('bill fetched', { date, rows: read.rows, bytes: outcome.bytes, gzip: outcome.gzip ? 'yes' : 'no', ms: outcome.ms });
    return { kind: 'bill', entries: read.entries, rows: read.rows };
  } catch (error) {
    if (!(error instanceof BillError)) throw error;
    log.error('the bill cannot be read; reconcile again later', { date, error: error.message });
    return { kind: 'unavailable', reason: `the bill of ${date} cannot be read: ${error.message}; it is fetched again next time` };
  }
}

/**
 * fetchDayBill for a command of one day: the entries (none for No Bill Exist), or exit 3 when there is nothing
 * to reconcile with now, printed and logged here. Exit 1 for a failure that is not about the bill.
 */
export async function fetchBillEntries(
  client: Pick<WechatPayClient, 'downloadbill'>,
  date: string,
  log: Logger,
): Promise<{ entries: BillEntry[] } | { exit: number }> {
  try {
    const day = await fetchDayBill(client, date, log);
    if (day.kind === 'unavailable') {
      print(day.reason);
      return { exit: 3 };
    }
    return { entries: day.kind === 'bill' ? day.entries : [] };
  } catch (error) {
    print(`fetching the bill of ${date} failed: ${messageOf(error)}`);
    log.error('reconciliation failed', { date, error: messageOf(error) });
    return { exit: 1 };
  }
}
