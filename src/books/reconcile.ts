import { dayBounds } from '../business-day.js';
import type { Journal, Sale } from '../journal/journal.js';
import { refundAccepted } from '../journal/states.js';
import { formatYuan } from '../money.js';
import { parseBill } from '../wechatpay/bill.js';

/**
 * A day's reconciliation (contract §6.7): WeChat Pay's bill of that day matched, row by row, against the
 * journal. Every row of this box (设备号 = the device id, or an out_trade_no the box made) is matched with its
 * sale or refund, every sale the journal says was paid that day must be in the bill, and every difference is
 * named with exactly one kind and what to do about it.
 *
 * The bill's days are China time (UTC+8) whatever SCANBOX_TIMEZONE says, so the journal side is taken in
 * China time too.
 */

export const BILL_TIME_ZONE = 'Asia/Shanghai';

/** What reconciliation needs of a bill row (src/wechatpay/bill.ts parses them). */
export interface BillEntry {
  deviceInfo: string;
  outTradeNo: string;
  transactionId: string;
  /** SUCCESS (paid and kept), REVOKED (paid, then reversed), REFUND (a refund row), or what WeChat Pay adds. */
  tradeState: string;
  /** 商户数据包: the register REF the box sends as attach. */
  attach: string;
  /** The order's amount (订单金额, else 应结订单金额), fen. */
  orderFen: number;
  outRefundNo: string;
  /** This refund's amount (申请退款金额, else 退款金额), fen; 0 on trade rows. */
  refundFen: number;
}

/**
 * The rows of a bill's text, each cut down at once to what reconciliation needs: a busy merchant's bill is tens
 * of thousands of rows of 27 fields, and only 8 are looked at. Throws BillError for a bill that cannot be read.
 */
export function entriesOfBill(text: string): { entries: BillEntry[]; rows: number } {
  const entries: BillEntry[] = [];
  parseBill(text, (row) => {
    entries.push({
      deviceInfo: row.deviceInfo,
      outTradeNo: row.outTradeNo,
      transactionId: row.transactionId,
      tradeState: row.tradeState,
      attach: row.attach,
      orderFen: row.orderFen,
      outRefundNo: row.outRefundNo,
      refundFen: row.requestedRefundFen ?? row.refundFen ?? 0,
    });
  });
  return { entries, rows: entries.length };
}

export type DiscrepancyKind = 'CHARGED_NOT_REPORTED' | 'PAID_NOT_IN_BILL' | 'AMOUNT_MISMATCH' | 'REFUND_MISMATCH' | 'UNKNOWN_ORDER';

export interface Discrepancy {
  kind: DiscrepancyKind;
  out_trade_no: string;
  /** The register REF: the journal's, else the bill's attach; null when neither has one. */
  ref: string | null;
  /** What WeChat Pay's bill says, fen (null: not in the bill). */
  bill_fen: number | null;
  /** What the journal says, fen (null: not in the journal). */
  journal_fen: number | null;
  /** The sale's journal state, when there is a sale. */
  state: string | null;
  out_refund_no?: string;
  what: string;
  to_do: string;
}

export interface ReconcileResult {
  date: string;
  /** Rows of this box in the bill (trades and refunds) and the journal's sales and refunds that agree. */
  matched: number;
  discrepancies: Discrepancy[];
  /** Rows of this box in the bill, and of the merchant's other boxes (not looked at). */
  rows: { mine: number; others: number };
}

export interface ReconcileInput {
  date: string;
  deviceId: string;
  entries: readonly BillEntry[];
  journal: Journal;
}

/** out_trade_no and out_refund_no of this box: the device id, the journal's 4-character tag, (R and) 8 digits. */
function madeBy(deviceId: string): { trade: RegExp; refund: RegExp } {
  return { trade: new RegExp(`^${deviceId}[A-Z0-9]{4}[0-9]{8}$`), refund: new RegExp(`^${deviceId}[A-Z0-9]{4}R[0-9]{8}$`) };
}

const TO_DO: Record<DiscrepancyKind, string> = {
  CHARGED_NOT_REPORTED:
    'WeChat Pay kept money the register was not told PAID: refund it in the merchant platform (the customer did not get the goods as paid)',
  PAID_NOT_IN_BILL:
    'the register was told PAID but WeChat Pay did not keep the money: check the order in the merchant platform and ask the customer to pay again if it was not paid',
  AMOUNT_MISMATCH: 'the amounts differ: check the order in the merchant platform and settle the difference with the customer',
  REFUND_MISMATCH: 'the refunds differ: check the refund in the merchant platform (scanbox tx show REF lists what the box did)',
  UNKNOWN_ORDER:
    "a sale of this box that the journal does not have (a lost or replaced journal?): check it in the merchant platform and the register's records",
};

export function reconcile(input: ReconcileInput): ReconcileResult {
  const { date, deviceId, entries, journal } = input;
  const { startMs, endMs } = dayBounds(date, BILL_TIME_ZONE);
  const made = madeBy(deviceId);
  const mine = entries.filter((e) => e.deviceInfo === deviceId || made.trade.test(e.outTradeNo) || made.refund.test(e.outRefundNo));
  const discrepancies: Discrepancy[] = [];
  let matched = 0;
  const found = (kind: DiscrepancyKind, fields: Omit<Discrepancy, 'kind' | 'to_do'>, toDo = TO_DO[kind]): void => {
    discrepancies.push({ kind, ...fields, to_do: toDo });
  };

  const keptInBill = new Set<string>();
  const revokedInBill = new Set<string>();
  const refundRows: BillEntry[] = [];
  for (const entry of mine) {
    if (entry.tradeState === 'REFUND') {
      refundRows.push(entry);
      continue;
    }
    const sale = journal.byOutTradeNo(entry.outTradeNo);
    const base = {
      out_trade_no: entry.outTradeNo,
      ref: sale?.ref ?? (entry.attach === '' ? null : entry.attach),
      bill_fen: entry.orderFen,
      journal_fen: sale?.amountFen ?? null,
      state: sale?.state ?? null,
    };
    if (!sale) {
      found('UNKNOWN_ORDER', { ...base, what: `the bill has ${entry.tradeState} ${formatYuan(entry.orderFen)} yuan for an order the journal does not know` });
      continue;
    }
    if (entry.tradeState === 'REVOKED') {
      revokedInBill.add(entry.outTradeNo);
      // Paid, then reversed: nothing kept. Only a sale the register was told PAID disagrees.
      if (sale.state === 'paid') {
        found('PAID_NOT_IN_BILL', { ...base, what: 'the journal says paid; WeChat Pay reversed the order (REVOKED) and kept nothing' });
      } else matched++;
      continue;
    }
    keptInBill.add(entry.outTradeNo);
    if (sale.state === 'paid') {
      if (entry.orderFen !== sale.amountFen) {
        found('AMOUNT_MISMATCH', { ...base, what: `the bill says ${formatYuan(entry.orderFen)} yuan, the sale was ${formatYuan(sale.amountFen)} yuan` });
      } else matched++;
      continue;
    }
    if (reversedAfterBill(sale, endMs)) {
      // A paid sale reversed by a technician after the bill was made: the bill still shows it as paid.
      matched++;
      continue;
    }
    found('CHARGED_NOT_REPORTED', { ...base, what: chargedText(sale) }, chargedToDo(sale));
  }

  journal.eachPaidSaleBetween(startMs, endMs, (sale) => {
    if (keptInBill.has(sale.outTradeNo) || revokedInBill.has(sale.outTradeNo)) return;
    found('PAID_NOT_IN_BILL', {
      out_trade_no: sale.outTradeNo,
      ref: sale.ref,
      bill_fen: null,
      journal_fen: sale.amountFen,
      state: sale.state,
      what: `the register was told PAID (${formatYuan(sale.amountFen)} yuan, transaction ${sale.transactionId ?? '-'}); the bill has no such payment`,
    });
  });

  const refundsInBill = new Set<string>();
  for (const entry of refundRows) {
    refundsInBill.add(entry.outRefundNo);
    const refund = journal.refunds.byOutRefundNo(entry.outRefundNo);
    const base = {
      out_trade_no: entry.outTradeNo,
      out_refund_no: entry.outRefundNo,
      ref: refund?.ref ?? (entry.attach === '' ? null : entry.attach),
      bill_fen: entry.refundFen,
      journal_fen: refund?.amountFen ?? null,
      state: refund?.state ?? null,
    };
    if (!refund) {
      found('REFUND_MISMATCH', { ...base, what: `the bill has a refund of ${formatYuan(entry.refundFen)} yuan the journal does not know` });
    } else if (refund.outTradeNo !== entry.outTradeNo) {
      found('REFUND_MISMATCH', { ...base, what: `the bill files refund ${entry.outRefundNo} under another order than the journal (${refund.outTradeNo})` });
    } else if (refund.amountFen !== entry.refundFen) {
      found('REFUND_MISMATCH', { ...base, what: `the bill says ${formatYuan(entry.refundFen)} yuan, the journal's refund ${refund.rid} is ${formatYuan(refund.amountFen)} yuan` });
    } else if (refund.state === 'failed') {
      found('REFUND_MISMATCH', { ...base, what: `the journal has refund ${refund.rid} refused (${refund.finalCode}); the bill shows it requested` });
    } else matched++;
  }
  for (const refund of journal.refunds.createdBetween(startMs, endMs)) {
    if (!refundAccepted(refund.state) || refundsInBill.has(refund.outRefundNo)) continue;
    found('REFUND_MISMATCH', {
      out_trade_no: refund.outTradeNo,
      out_refund_no: refund.outRefundNo,
      ref: refund.ref,
      bill_fen: null,
      journal_fen: refund.amountFen,
      state: refund.state,
      what: `WeChat Pay accepted refund ${refund.rid} (${formatYuan(refund.amountFen)} yuan) but the bill has no such refund`,
    });
  }

  return { date, matched, discrepancies, rows: { mine: mine.length, others: entries.length - mine.length } };
}

function reversedAfterBill(sale: Sale, dayEndMs: number): boolean {
  return sale.state === 'reversed' && sale.transactionId !== null && sale.updatedAt >= dayEndMs;
}

function chargedText(sale: Sale): string {
  const told = sale.finalCode ? `FAILED ${sale.finalCode}` : 'no answer yet';
  return `WeChat Pay kept ${formatYuan(sale.amountFen)} yuan; the journal says ${sale.state} (the register was told ${told})`;
}

function chargedToDo(sale: Sale): string {
  if (sale.state === 'reversing') {
    return 'the box is still reversing it and gives the money back once WeChat Pay confirms; if scanbox status still lists it tomorrow, refund it in the merchant platform';
  }
  return TO_DO.CHARGED_NOT_REPORTED;
}

/** The result as a technician reads it. */
export function formatReconciliation(result: ReconcileResult): string[] {
  const day = `${result.date.slice(0, 4)}-${result.date.slice(4, 6)}-${result.date.slice(6)}`;
  const lines = [
    `reconciliation of ${day} (WeChat Pay's bill, China time): ${result.rows.mine} row(s) of this box` +
      `${result.rows.others > 0 ? `, ${result.rows.others} of the merchant's other boxes not looked at` : ''}`,
    `  matched: ${result.matched}`,
    `  discrepancies: ${result.discrepancies.length}`,
  ];
  for (const d of result.discrepancies) {
    const amounts = `bill ${d.bill_fen === null ? '-' : formatYuan(d.bill_fen)}, journal ${d.journal_fen === null ? '-' : formatYuan(d.journal_fen)}`;
    lines.push(
      '',
      `${d.kind} ${d.out_trade_no}${d.out_refund_no ? ` refund ${d.out_refund_no}` : ''} ref ${d.ref ?? '-'} (${amounts})`,
      `  ${d.what}`,
      `  to do: ${d.to_do}`,
    );
  }
  return lines;
}
