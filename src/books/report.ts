import { dayBounds, localHour } from '../business-day.js';
import type { Journal, Sale } from '../journal/journal.js';
import type { Refund } from '../journal/refunds.js';
import { refundAccepted } from '../journal/states.js';
import { formatYuan } from '../money.js';
import { dayTotals } from './totals.js';

/**
 * A business day's report from the journal alone (`scanbox report`): what was paid and refunded, the net, the
 * sales that failed (by code) and those reversed, an hourly breakdown, and what is still open. Integer fen
 * throughout; yuan only in `formatReport`.
 */

export interface CountFen {
  count: number;
  fen: number;
}

export interface HourRow {
  /** 0-23 on the shop's wall clock (SCANBOX_TIMEZONE). */
  hour: number;
  paid: CountFen;
  refunded: CountFen;
}

export interface DayReport {
  day: string;
  timeZone: string;
  paid: CountFen;
  refunded: CountFen;
  netFen: number;
  /** Sales opened that day that ended without money taken, by their code (NOTENOUGH, CANCELLED ...). */
  failures: (CountFen & { code: string })[];
  /** Orders of that day reversed at WeChat Pay (the payer got back anything taken). */
  reversed: CountFen;
  /**
   * Orders of that day whose reversal WeChat Pay refused for good (REVERSE_EXPIRE and the like, state
   * reverse_failed): money WeChat Pay kept that the box could not give back. Never among the failures "nothing
   * kept": each needs the merchant platform (refund it there, or check it was never paid).
   */
  kept: { count: number; fen: number; sales: RefusedReversal[] };
  /** Only hours with something in them. */
  hours: HourRow[];
  /** Whatever is still being worked on, whatever its day: reversals and refunds not confirmed yet. */
  open: {
    reversals: { outTradeNo: string; ref: string; fen: number; code: string | null }[];
    /** Every refused reversal whatever its day, until a technician settles it. */
    refusedReversals: RefusedReversal[];
    refunds: { rid: string; ref: string; fen: number; state: string; code: string | null; outRefundNo: string }[];
  };
}

export interface RefusedReversal {
  outTradeNo: string;
  ref: string;
  fen: number;
  /** WeChat Pay's refusal (REVERSE_EXPIRE ...). */
  code: string | null;
  text: string | null;
}

/** The engine journals the refusal's code in its text (`reversal refused (REVERSE_EXPIRE): ...`); finalCode is what the register was told. */
const refused = (sale: Sale): RefusedReversal => ({
  outTradeNo: sale.outTradeNo,
  ref: sale.ref,
  fen: sale.amountFen,
  code: /reversal refused \(([A-Z0-9_]+)\)/.exec(sale.finalText ?? '')?.[1] ?? sale.finalCode,
  text: sale.finalText,
});

function add(target: CountFen, fen: number): void {
  target.count += 1;
  target.fen += fen;
}

export function dayReport(journal: Journal, day: string, timeZone: string): DayReport {
  const { startMs, endMs } = dayBounds(day, timeZone);
  const totals = dayTotals(journal, day, timeZone);
  const hours = new Map<number, HourRow>();
  const hour = (ms: number): HourRow => {
    const h = localHour(ms, timeZone);
    let row = hours.get(h);
    if (!row) hours.set(h, (row = { hour: h, paid: { count: 0, fen: 0 }, refunded: { count: 0, fen: 0 } }));
    return row;
  };
  for (const sale of journal.paidSalesBetween(startMs, endMs)) add(hour(sale.paidAt ?? sale.updatedAt).paid, sale.amountFen);
  const refunds = journal.refunds.createdBetween(startMs, endMs).filter((refund) => refundAccepted(refund.state));
  for (const refund of refunds) add(hour(refund.createdAt).refunded, refund.amountFen);

  const failures = new Map<string, CountFen & { code: string }>();
  const reversed: CountFen = { count: 0, fen: 0 };
  const kept = { count: 0, fen: 0, sales: [] as RefusedReversal[] };
  for (const sale of journal.touchedBetween(startMs, endMs)) {
    if (sale.createdAt < startMs || sale.createdAt >= endMs) continue;
    if (sale.state === 'reversed') add(reversed, sale.amountFen);
    if (sale.state === 'reverse_failed') {
      // WeChat Pay refused to reverse it: whatever it took, it keeps. Not a failure that kept nothing.
      add(kept, sale.amountFen);
      kept.sales.push(refused(sale));
      continue;
    }
    if (sale.state === 'failed' || sale.state === 'reversed') {
      const code = sale.finalCode ?? sale.state;
      let row = failures.get(code);
      if (!row) failures.set(code, (row = { code, count: 0, fen: 0 }));
      add(row, sale.amountFen);
    }
  }

  const openReversals = journal.pendingReversals().map((sale: Sale) => ({ outTradeNo: sale.outTradeNo, ref: sale.ref, fen: sale.amountFen, code: sale.finalCode }));
  // Accepted refunds are REFUNDED for the register and only followed until the money arrives: not open.
  const openRefunds = journal.refunds.unfinished().filter((refund) => !refundAccepted(refund.state)).map((refund: Refund) => ({
    rid: refund.rid,
    ref: refund.ref,
    fen: refund.amountFen,
    state: refund.state,
    code: refund.finalCode,
    outRefundNo: refund.outRefundNo,
  }));
  return {
    day,
    timeZone,
    paid: { count: totals.paidCount, fen: totals.paidFen },
    refunded: { count: totals.refundedCount, fen: totals.refundedFen },
    netFen: totals.netFen,
    failures: [...failures.values()].sort((a, b) => b.count - a.count || a.code.localeCompare(b.code)),
    reversed,
    kept,
    hours: [...hours.values()].sort((a, b) => a.hour - b.hour),
    open: { reversals: openReversals, refusedReversals: journal.refusedReversals().map(refused), refunds: openRefunds },
  };
}

const yuan = (fen: number): string => formatYuan(fen);

/** The report as a technician reads it. */
export function formatReport(report: DayReport): string[] {
  const day = `${report.day.slice(0, 4)}-${report.day.slice(4, 6)}-${report.day.slice(6)}`;
  const lines = [
    `business day ${day} (${report.timeZone})`,
    `  paid      ${String(report.paid.count).padStart(6)} sale(s)   ${yuan(report.paid.fen).padStart(12)} yuan`,
    `  refunded  ${String(report.refunded.count).padStart(6)} refund(s) ${yuan(report.refunded.fen).padStart(12)} yuan`,
    `  net                        ${yuan(report.netFen).padStart(12)} yuan`,
    `  reversed  ${String(report.reversed.count).padStart(6)} order(s)  ${yuan(report.reversed.fen).padStart(12)} yuan (given back, not in the net)`,
  ];
  if (report.kept.count > 0) {
    lines.push(
      '',
      `kept by WeChat Pay, reversal refused: ${report.kept.count} order(s) ${yuan(report.kept.fen)} yuan: the box cannot give it back; refund each in the merchant platform (or check it was never paid):`,
    );
    for (const r of report.kept.sales) lines.push(`  ${r.outTradeNo} (ref ${r.ref}) ${yuan(r.fen)} yuan${r.code ? ` [${r.code}]` : ''}`);
  }
  lines.push('', report.failures.length === 0 ? 'no failed sales' : 'failed sales by code (nothing kept):');
  for (const f of report.failures) lines.push(`  ${f.code.padEnd(20)} ${String(f.count).padStart(6)}   ${yuan(f.fen).padStart(12)} yuan`);
  lines.push('', report.hours.length === 0 ? 'no payments or refunds that day' : 'by hour:        paid             refunded');
  for (const h of report.hours) {
    lines.push(
      `  ${String(h.hour).padStart(2, '0')}:00  ${String(h.paid.count).padStart(6)} ${yuan(h.paid.fen).padStart(12)}   ${String(h.refunded.count).padStart(6)} ${yuan(h.refunded.fen).padStart(12)}`,
    );
  }
  lines.push(
    '',
    `still open: ${report.open.reversals.length} reversal(s), ${report.open.refusedReversals.length} refused reversal(s) needing the merchant platform, ${report.open.refunds.length} refund(s)`,
  );
  for (const r of report.open.reversals) lines.push(`  reversal ${r.outTradeNo} (ref ${r.ref}) ${yuan(r.fen)} yuan${r.code ? ` [${r.code}]` : ''}`);
  for (const r of report.open.refusedReversals) {
    lines.push(`  refused reversal ${r.outTradeNo} (ref ${r.ref}) ${yuan(r.fen)} yuan${r.code ? ` [${r.code}]` : ''}: money kept, refund it in the merchant platform`);
  }
  for (const r of report.open.refunds) lines.push(`  refund ${r.rid} (ref ${r.ref}) ${yuan(r.fen)} yuan ${r.state}${r.code ? ` [${r.code}]` : ''} ${r.outRefundNo}`);
  return lines;
}
