import { businessDay, nextDay, previousDay, yesterday } from '../business-day.js';
import type { Journal } from '../journal/journal.js';
import type { Logger } from '../log.js';
import { BILL_TIME_ZONE, formatReconciliation, reconcile, type BillEntry, type ReconcileResult } from './reconcile.js';

/**
 * The days `scanbox reconcile` works through (contract §1): one day given with --date, or without it every
 * business day not reconciled yet, oldest first, from the journal's first day through yesterday (China time,
 * the bill's days), at most CATCH_UP_DAYS back. A box that was off for a week reconciles the whole week at its
 * next morning; a day whose bill is not available stops the run there (exit 3: the timer tries again), so a
 * later day is never reconciled before an earlier one.
 *
 * What counts as reconciled is what the journal keeps: a day with a result (matched, or with discrepancies,
 * which are kept, logged and shown by `scanbox status`; `--date` runs the day again). A day with neither sales
 * nor a bill (No Bill Exist, nothing in the journal) is reconciled with 0 matched. A day whose bill could not be
 * had is noted with why (`reconcile_pending`) and stays to do.
 */

/**
 * A day's bill as reconciliation gets it (app/fetch-bill.ts fetches it): `bill` whole, with its entries;
 * `no_bill` (No Bill Exist: no trade that day); `unavailable` with one line of why (not made yet, not reachable,
 * not readable or not whole): tried again later, never dropped.
 */
export type DayBill =
  | { kind: 'bill'; entries: BillEntry[]; rows: number }
  | { kind: 'no_bill' }
  | { kind: 'unavailable'; reason: string };

/**
 * How far back a catch-up goes, in days before today: WeChat Pay keeps bills "3 months", which is never fewer
 * than 89 days (February, March and April), so every day from today - 89 is always in reach and a catch-up is
 * never stuck at a day WeChat Pay no longer has.
 */
export const CATCH_UP_DAYS = 89;

export interface CatchUpPlan {
  /** The days to reconcile, oldest first. */
  days: string[];
  /** The journal's first business day (China time), null for a journal without a sale. */
  first: string | null;
  /** The oldest day in reach of WeChat Pay's bills. */
  oldest: string;
  /** Yesterday: the last day a catch-up reconciles. */
  last: string;
  /** Days of the journal before `oldest` that were never reconciled: beyond reach now. */
  beyond: number;
}

function daysBack(day: string, n: number): string {
  let d = day;
  for (let i = 0; i < n; i++) d = previousDay(d);
  return d;
}

/** The days a catch-up would reconcile now: not reconciled yet, from the journal's first day through yesterday. */
export function catchUpPlan(journal: Journal, nowMs: number): CatchUpPlan {
  const today = businessDay(nowMs, BILL_TIME_ZONE);
  const last = yesterday(nowMs, BILL_TIME_ZONE);
  const oldest = daysBack(today, CATCH_UP_DAYS);
  const firstAt = journal.firstSaleAt();
  const first = firstAt === null ? null : businessDay(firstAt, BILL_TIME_ZONE);
  if (first === null || first > last) return { days: [], first, oldest, last, beyond: 0 };
  const start = first > oldest ? first : oldest;
  const done = journal.reconciledDays(first, last);
  const days: string[] = [];
  for (let d = start; d <= last; d = nextDay(d)) if (!done.has(d)) days.push(d);
  let beyond = 0;
  for (let d = first; d < oldest; d = nextDay(d)) if (!done.has(d)) beyond++;
  return { days, first, oldest, last, beyond };
}

/** The oldest day not reconciled and why, for `scanbox status`; null when every day through yesterday is. */
export function oldestNotReconciled(journal: Journal, nowMs: number): { day: string; why: string } | null {
  const plan = catchUpPlan(journal, nowMs);
  const day = plan.days[0];
  if (day === undefined) return null;
  const pending = journal.pendingReconciliation(day);
  const later = plan.days.length - 1;
  const rest = later > 0 ? ` (and ${later} later day${later === 1 ? '' : 's'})` : '';
  if (pending === null) return { day, why: `not tried yet${rest}: the daily timer runs scanbox reconcile after 10:00 China time` };
  return { day, why: `${pending.reason} (tried ${pending.tries} time${pending.tries === 1 ? '' : 's'})${rest}` };
}

export interface RunInput {
  journal: Journal;
  deviceId: string;
  days: readonly string[];
  fetch: (date: string) => Promise<DayBill>;
  now: () => number;
  log: Logger;
  /** Where the technician's lines go. */
  out: (lines: string[]) => void;
  json: boolean;
}

export interface RunResult {
  /** 0 every day matched, 1 discrepancies on some day, 3 stopped at a day whose bill is not available. */
  exit: number;
  results: ReconcileResult[];
  /** The day the run stopped at and why, when it did. */
  stopped: { date: string; reason: string } | null;
}

/**
 * Reconciles `days` in order: fetch, match, keep (each day in its own transaction), print, log each
 * discrepancy at error level. Stops at the first day whose bill is not available, noting why in the journal.
 */
export async function reconcileDays(input: RunInput): Promise<RunResult> {
  const { journal, deviceId, log } = input;
  const results: ReconcileResult[] = [];
  for (const date of input.days) {
    const bill = await input.fetch(date);
    if (bill.kind === 'unavailable') {
      journal.notReconciled(date, input.now(), bill.reason);
      const left = input.days.length - results.length;
      if (!input.json) {
        input.out([
          bill.reason,
          `not reconciled: ${date}${left > 1 ? ` and the ${left - 1} day(s) after it` : ''}; scanbox reconcile tries again later (exit 3)`,
        ]);
      }
      log.warning('reconciliation stopped: the bill is not available', { date, days_left: left });
      return { exit: 3, results, stopped: { date, reason: bill.reason } };
    }
    const entries = bill.kind === 'bill' ? bill.entries : [];
    const result = reconcile({ date, deviceId, entries, journal });
    journal.saveReconciliation({
      day: date,
      at: input.now(),
      matched: result.matched,
      discrepancies: result.discrepancies.length,
      result: JSON.stringify(result),
    });
    for (const d of result.discrepancies) {
      log.error(`reconciliation: ${d.kind}: ${d.what}; ${d.to_do}`, {
        date,
        out_trade_no: d.out_trade_no,
        ref: d.ref ?? '-',
        ...(d.out_refund_no ? { out_refund_no: d.out_refund_no } : {}),
      });
    }
    log.info('reconciliation done', { date, matched: result.matched, discrepancies: result.discrepancies.length, bill: bill.kind === 'bill' ? 'yes' : 'none' });
    results.push(result);
    if (!input.json) {
      const lines = formatReconciliation(result);
      if (bill.kind === 'no_bill') lines[0] += ' (No Bill Exist: no trade in WeChat Pay that day)';
      input.out(results.length > 1 ? ['', ...lines] : lines);
    }
  }
  const exit = results.some((r) => r.discrepancies.length > 0) ? 1 : 0;
  return { exit, results, stopped: null };
}

/** The days as one JSON object (--json of a catch-up). */
export function catchUpJson(run: RunResult, plan: CatchUpPlan): string {
  return JSON.stringify({
    days: run.results.map((r) => ({ date: r.date, matched: r.matched, discrepancies: r.discrepancies })),
    not_reconciled: run.stopped,
    beyond_reach: plan.beyond,
  });
}
