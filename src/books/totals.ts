import { dayBounds } from '../business-day.js';
import type { Journal } from '../journal/journal.js';
import { refundAccepted } from '../journal/states.js';

/**
 * A business day's money from the journal alone (contract §3 `TOTALS`): the sales paid that day and still
 * paid (a reversed sale gave its money back), the refunds recorded that day that WeChat Pay accepted, and
 * the difference. Integer fen throughout.
 */
export interface DayTotals {
  day: string;
  paidCount: number;
  paidFen: number;
  refundedCount: number;
  refundedFen: number;
  netFen: number;
}

export function dayTotals(journal: Journal, day: string, timeZone: string): DayTotals {
  const { startMs, endMs } = dayBounds(day, timeZone);
  const paid = journal.paidBetween(startMs, endMs);
  const refunds = journal.refunds.createdBetween(startMs, endMs).filter((refund) => refundAccepted(refund.state));
  const refundedFen = refunds.reduce((sum, refund) => sum + refund.amountFen, 0);
  return {
    day,
    paidCount: paid.count,
    paidFen: paid.fen,
    refundedCount: refunds.length,
    refundedFen,
    netFen: paid.fen - refundedFen,
  };
}
