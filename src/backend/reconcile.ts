import { BILL_TIME_ZONE, type BillEntry } from '../books/reconcile.js';
import { dayBounds } from '../business-day.js';
import { formatYuan } from '../money.js';
import { micropayAction, tradeStateClass } from '../wechatpay/codes.js';
import type { BoxRecord, CallRecord } from './store.js';

/**
 * `scanbox backend reconcile` (contract §6.7 from the backend's side): the merchant's whole bill of a day matched
 * against the backend's journal of the calls it forwarded, for every box ever enrolled (revoked ones included: their
 * trades are still the merchant's money).
 *
 * What the backend knows is what WeChat Pay answered through it: a verified micropay or orderquery that said paid,
 * a reverse WeChat Pay confirmed, a refund it accepted or refused, and the amount each request named. What it
 * cannot know is what a box told its register: a sale paid at WeChat Pay that the box then reversed, or one the
 * box is still reversing, looks the same to it as any other. So its kinds name what its own journal says, and
 * `scanbox reconcile` on each box (against the box's journal) remains the check of what the register was told:
 *
 * - CHARGED_NOT_RECORDED: the bill shows the money kept; no verified answer through the backend said paid (or
 *   WeChat Pay confirmed a reverse of it before the day ended).
 * - PAID_NOT_IN_BILL: a verified answer through the backend said paid; the bill has no payment kept for it.
 * - AMOUNT_MISMATCH: the bill's amount is not the one the box's micropay named.
 * - REFUND_MISMATCH: a refund row the backend never forwarded, or of another order or amount, or one WeChat Pay
 *   refused in its answer; or a refund WeChat Pay accepted through the backend that the bill lacks.
 * - UNKNOWN_ORDER: a row of an enrolled box about an order the backend never forwarded a call for, or a row of no
 *   enrolled box at all.
 */

export type BackendDiscrepancyKind = 'CHARGED_NOT_RECORDED' | 'PAID_NOT_IN_BILL' | 'AMOUNT_MISMATCH' | 'REFUND_MISMATCH' | 'UNKNOWN_ORDER';

export const BACKEND_DISCREPANCY_KINDS: readonly BackendDiscrepancyKind[] = [
  'CHARGED_NOT_RECORDED',
  'PAID_NOT_IN_BILL',
  'AMOUNT_MISMATCH',
  'REFUND_MISMATCH',
  'UNKNOWN_ORDER',
];

export interface BackendDiscrepancy {
  kind: BackendDiscrepancyKind;
  /** The enrolled box the order belongs to; null for a row of no enrolled box. */
  box: string | null;
  out_trade_no: string;
  out_refund_no?: string;
  /** The register REF from the bill's attach, when there is one (the backend journal keeps none). */
  ref: string | null;
  bill_fen: number | null;
  /** The amount the box's request named, as the backend journalled it. */
  backend_fen: number | null;
  /** What the backend's journal makes of the order or refund (TradeView / RefundView). */
  state: string | null;
  what: string;
  to_do: string;
}

export interface BackendReconcileResult {
  date: string;
  matched: number;
  discrepancies: BackendDiscrepancy[];
  /** Per enrolled box: its rows of the bill, how many matched, how many discrepancies name it. */
  boxes: { box: string; rows: number; matched: number; discrepancies: number }[];
  rows: { total: number; unenrolled: number };
}

/** What the backend's journal says became of an order. */
export type TradeView =
  /** A verified answer said paid, and no reverse WeChat Pay confirmed since. */
  | 'paid'
  /** WeChat Pay confirmed a reverse (or said REVOKED). */
  | 'reversed'
  /** WeChat Pay said it declined, closed or never had the order. */
  | 'not_paid'
  /** The payer was still confirming at the last answer. */
  | 'pending'
  /** Calls reached (or may have reached) WeChat Pay without a verified answer on the order's fate. */
  | 'unknown'
  /** Nothing of it went upstream (every call refused by the backend). */
  | 'none';

interface Trade {
  outTradeNo: string;
  deviceId: string;
  amountFen: number | null;
  /** The first micropay's time (else the first call's). */
  at: number;
  /** WeChat Pay's payment time from a verified answer (time_end): the day the bill puts the sale in. */
  paidAt: number | null;
  view: TradeView;
  reversedAt: number | null;
  /** A reverse went out whose outcome the backend does not know (its answer lost, or the backend stopped). */
  reverseInDoubt: boolean;
  last: string;
}

export type RefundView = 'accepted' | 'refused' | 'unknown' | 'none';

interface Refund {
  outRefundNo: string;
  outTradeNo: string | null;
  deviceId: string;
  amountFen: number | null;
  at: number;
  view: RefundView;
  refusedCode: string | null;
}

const TO_DO: Record<BackendDiscrepancyKind, string> = {
  CHARGED_NOT_RECORDED:
    "WeChat Pay kept money that no verified answer through the backend called paid: run scanbox reconcile on the box (its register may not have been told PAID) and check scanbox status there (it may still be reversing it); if the box did not report it PAID, refund it in the merchant platform",
  PAID_NOT_IN_BILL:
    'a verified answer through the backend said paid but WeChat Pay kept no such payment: check the order in the merchant platform; run scanbox reconcile on the box to see what its register was told',
  AMOUNT_MISMATCH: "the bill's amount is not the one the box asked for: check the order in the merchant platform and settle the difference with the customer",
  REFUND_MISMATCH: 'the refunds differ: check the refund in the merchant platform and on the box (scanbox tx show REF)',
  UNKNOWN_ORDER:
    'an order the backend never forwarded: check it in the merchant platform (a box in direct mode, another channel of the merchant, or a lost backend journal)',
};

function describe(call: CallRecord): string {
  return `${call.call} ${call.outcome}${call.state ? ` ${call.state}` : call.code ? ` ${call.code}` : ''}`;
}

/** Each order's fate by the backend's journal, walking its calls in the order they were made. */
export function tradesOf(calls: readonly CallRecord[]): Map<string, Trade> {
  const trades = new Map<string, Trade>();
  for (const call of calls) {
    if (call.outTradeNo === null || call.call === 'refund' || call.call === 'refundquery' || call.call === 'downloadbill') continue;
    let trade = trades.get(call.outTradeNo);
    if (trade === undefined) {
      trade = { outTradeNo: call.outTradeNo, deviceId: call.deviceId, amountFen: null, at: call.at, paidAt: null, view: 'none', reversedAt: null, reverseInDoubt: false, last: '' };
      trades.set(call.outTradeNo, trade);
    }
    if (call.call === 'micropay' && trade.amountFen === null) {
      trade.amountFen = call.amountFen;
      trade.at = call.at;
    }
    if (call.outcome === 'refused') continue;
    trade.last = describe(call);
    if (call.paidAt !== null && call.paidAt !== undefined) trade.paidAt ??= call.paidAt;
    const upstream = (): void => {
      if (trade.view === 'none') trade.view = 'unknown';
    };
    if (call.call === 'micropay') {
      if (call.outcome === 'success') trade.view = 'paid';
      else if (call.outcome === 'business' && call.code !== null) {
        const action = micropayAction(call.code);
        trade.view = action === 'final' || action === 'config' ? 'not_paid' : call.code === 'USERPAYING' ? 'pending' : 'unknown';
      } else upstream();
    } else if (call.call === 'orderquery') {
      if (call.outcome === 'success' && call.state !== null) {
        const cls = tradeStateClass(call.state);
        if (call.state === 'REVOKED') {
          trade.view = 'reversed';
          trade.reversedAt ??= call.at;
        } else if (cls === 'paid') trade.view = 'paid';
        else if (cls === 'closed') trade.view = 'not_paid';
        else if (cls === 'pending') trade.view = 'pending';
        else upstream();
      } else if (call.outcome === 'business' && call.code === 'ORDERNOTEXIST' && trade.view !== 'paid') {
        trade.view = 'not_paid';
      } else upstream();
    } else if (call.call === 'reverse') {
      if (call.outcome === 'success' && call.state === 'REVERSED') {
        trade.view = 'reversed';
        trade.reversedAt = call.at;
        trade.reverseInDoubt = false;
      } else if (call.outcome === 'business' && call.code === 'ORDERNOTEXIST') {
        trade.view = 'not_paid';
      } else if (call.outcome === 'sent' || call.outcome === 'unknown') {
        trade.reverseInDoubt = true;
        upstream();
      } else upstream();
    }
  }
  return trades;
}

/** Each refund's fate by the backend's journal (its refund calls and the refundqueries about it). */
export function refundsOf(calls: readonly CallRecord[]): Map<string, Refund> {
  const refunds = new Map<string, Refund>();
  for (const call of calls) {
    if (call.outRefundNo === null || (call.call !== 'refund' && call.call !== 'refundquery')) continue;
    let refund = refunds.get(call.outRefundNo);
    if (refund === undefined) {
      refund = { outRefundNo: call.outRefundNo, outTradeNo: null, deviceId: call.deviceId, amountFen: null, at: call.at, view: 'none', refusedCode: null };
      refunds.set(call.outRefundNo, refund);
    }
    if (call.call === 'refund' && refund.outTradeNo === null) {
      refund.outTradeNo = call.outTradeNo;
      refund.amountFen = call.amountFen;
      refund.at = call.at;
    }
    if (call.outcome === 'refused') continue;
    if (call.outcome === 'success' && (call.call === 'refund' || call.state !== null)) {
      refund.view = 'accepted';
      refund.refusedCode = null;
    } else if (call.call === 'refund' && call.outcome === 'business' && refund.view !== 'accepted') {
      refund.view = 'refused';
      refund.refusedCode = call.code;
    } else if (refund.view === 'none') refund.view = 'unknown';
  }
  return refunds;
}

export interface BackendReconcileInput {
  date: string;
  entries: readonly BillEntry[];
  /** Every box the backend ever enrolled, revoked ones too. */
  boxes: readonly BoxRecord[];
  /** The journal's calls about the day's orders (store.tradeCalls), oldest first. */
  calls: readonly CallRecord[];
}

export function reconcileBackend(input: BackendReconcileInput): BackendReconcileResult {
  const { date, entries, boxes } = input;
  const { startMs, endMs } = dayBounds(date, BILL_TIME_ZONE);
  const ids = boxes.map((b) => b.deviceId);
  // Device ids are prefix-free (the store refuses an enrolment that is not), so at most one box owns a number.
  const owner = (no: string): string | null => (no === '' || no === '0' ? null : (ids.find((id) => no.startsWith(id)) ?? null));
  const boxOf = (e: BillEntry): string | null => owner(e.outTradeNo) ?? owner(e.outRefundNo) ?? (ids.includes(e.deviceInfo) ? e.deviceInfo : null);
  const trades = tradesOf(input.calls);
  const refunds = refundsOf(input.calls);
  const discrepancies: BackendDiscrepancy[] = [];
  const perBox = new Map(ids.map((id) => [id, { box: id, rows: 0, matched: 0, discrepancies: 0 }]));
  let matched = 0;
  let unenrolled = 0;
  const match = (box: string): void => {
    matched++;
    const b = perBox.get(box);
    if (b) b.matched++;
  };
  const found = (kind: BackendDiscrepancyKind, fields: Omit<BackendDiscrepancy, 'kind' | 'to_do'>, toDo = TO_DO[kind]): void => {
    discrepancies.push({ kind, ...fields, to_do: toDo });
    const b = fields.box === null ? undefined : perBox.get(fields.box);
    if (b) b.discrepancies++;
  };

  const kept = new Set<string>();
  const revoked = new Set<string>();
  const refundRows = new Set<string>();
  for (const entry of entries) {
    const box = boxOf(entry);
    const isRefund = entry.tradeState === 'REFUND';
    const ref = entry.attach === '' ? null : entry.attach;
    if (box === null) {
      unenrolled++;
      found('UNKNOWN_ORDER', {
        box: null,
        out_trade_no: entry.outTradeNo,
        ...(isRefund ? { out_refund_no: entry.outRefundNo } : {}),
        ref,
        bill_fen: isRefund ? entry.refundFen : entry.orderFen,
        backend_fen: null,
        state: null,
        what: `the bill has ${entry.tradeState} ${formatYuan(isRefund ? entry.refundFen : entry.orderFen)} yuan (设备号 ${entry.deviceInfo || '-'}) of no box enrolled with this backend`,
      });
      continue;
    }
    perBox.get(box)!.rows++;

    if (isRefund) {
      refundRows.add(entry.outRefundNo);
      const refund = refunds.get(entry.outRefundNo);
      const base = {
        box,
        out_trade_no: entry.outTradeNo,
        out_refund_no: entry.outRefundNo,
        ref,
        bill_fen: entry.refundFen,
        backend_fen: refund?.amountFen ?? null,
        state: refund?.view ?? null,
      };
      if (!refund || refund.outTradeNo === null) {
        found('REFUND_MISMATCH', { ...base, what: `the bill has a refund of ${formatYuan(entry.refundFen)} yuan that did not go through this backend` });
      } else if (refund.outTradeNo !== entry.outTradeNo) {
        found('REFUND_MISMATCH', { ...base, what: `the bill files refund ${entry.outRefundNo} under another order than the box asked (${refund.outTradeNo})` });
      } else if (refund.amountFen !== entry.refundFen) {
        found('REFUND_MISMATCH', { ...base, what: `the bill says ${formatYuan(entry.refundFen)} yuan, the box asked for ${refund.amountFen === null ? '-' : formatYuan(refund.amountFen)} yuan` });
      } else if (refund.view === 'refused') {
        found('REFUND_MISMATCH', { ...base, what: `WeChat Pay refused this refund in its answer (${refund.refusedCode ?? '-'}); the bill shows it requested` });
      } else match(box);
      continue;
    }

    const trade = trades.get(entry.outTradeNo);
    const base = {
      box,
      out_trade_no: entry.outTradeNo,
      ref,
      bill_fen: entry.orderFen,
      backend_fen: trade?.amountFen ?? null,
      state: trade?.view ?? null,
    };
    if (!trade || trade.view === 'none') {
      found('UNKNOWN_ORDER', { ...base, what: `the bill has ${entry.tradeState} ${formatYuan(entry.orderFen)} yuan for an order of ${box} that the backend never forwarded a call for` });
      continue;
    }
    if (entry.tradeState === 'REVOKED') {
      revoked.add(entry.outTradeNo);
      if (trade.view === 'paid' && !trade.reverseInDoubt) {
        found('PAID_NOT_IN_BILL', { ...base, what: `a verified answer through the backend said paid; WeChat Pay reversed the order (REVOKED) and kept nothing, and no reverse of it went through this backend` });
      } else match(box);
      continue;
    }
    kept.add(entry.outTradeNo);
    if (trade.view === 'paid') {
      if (trade.amountFen !== entry.orderFen) {
        found('AMOUNT_MISMATCH', { ...base, what: `the bill says ${formatYuan(entry.orderFen)} yuan, the box's micropay was for ${trade.amountFen === null ? '-' : formatYuan(trade.amountFen)} yuan` });
      } else match(box);
      continue;
    }
    if (trade.view === 'reversed' && trade.reversedAt !== null && trade.reversedAt >= endMs) {
      // Reversed after the bill was made: the day's bill still shows it kept.
      match(box);
      continue;
    }
    const why =
      trade.view === 'reversed'
        ? 'WeChat Pay confirmed a reverse of it through the backend during the day'
        : `the backend's journal has no verified paid answer for it (last: ${trade.last || '-'})`;
    found('CHARGED_NOT_RECORDED', { ...base, what: `WeChat Pay kept ${formatYuan(entry.orderFen)} yuan; ${why}` });
  }

  for (const trade of trades.values()) {
    // Dated as the bill dates it: by WeChat Pay's payment time, else (an old journal) the micropay's start.
    const when = trade.paidAt ?? trade.at;
    if (trade.view !== 'paid' || when < startMs || when >= endMs) continue;
    if (kept.has(trade.outTradeNo) || revoked.has(trade.outTradeNo)) continue;
    found('PAID_NOT_IN_BILL', {
      box: trade.deviceId,
      out_trade_no: trade.outTradeNo,
      ref: null,
      bill_fen: null,
      backend_fen: trade.amountFen,
      state: trade.view,
      what: `a verified answer through the backend said paid (${trade.amountFen === null ? '-' : formatYuan(trade.amountFen)} yuan; last: ${trade.last}); the bill has no such payment`,
    });
  }
  for (const refund of refunds.values()) {
    if (refund.view !== 'accepted' || refund.at < startMs || refund.at >= endMs || refundRows.has(refund.outRefundNo)) continue;
    found('REFUND_MISMATCH', {
      box: refund.deviceId,
      out_trade_no: refund.outTradeNo ?? '-',
      out_refund_no: refund.outRefundNo,
      ref: null,
      bill_fen: null,
      backend_fen: refund.amountFen,
      state: refund.view,
      what: `WeChat Pay accepted refund ${refund.outRefundNo} (${refund.amountFen === null ? '-' : formatYuan(refund.amountFen)} yuan) through the backend but the bill has no such refund`,
    });
  }

  return { date, matched, discrepancies, boxes: [...perBox.values()], rows: { total: entries.length, unenrolled } };
}

/** The result as the merchant's administrator reads it. */
export function formatBackendReconciliation(result: BackendReconcileResult): string[] {
  const day = `${result.date.slice(0, 4)}-${result.date.slice(4, 6)}-${result.date.slice(6)}`;
  const lines = [
    `reconciliation of ${day} (WeChat Pay's bill, China time) against the backend's journal of the calls it forwarded: ` +
      `${result.rows.total} row(s), ${result.boxes.length} enrolled box(es)`,
    "  the backend cannot know what each register was told: scanbox reconcile on each box checks that against the box's journal",
  ];
  for (const b of result.boxes) lines.push(`  ${b.box}: ${b.rows} row(s), ${b.matched} matched, ${b.discrepancies} discrepancies`);
  if (result.rows.unenrolled > 0) lines.push(`  of no enrolled box: ${result.rows.unenrolled} row(s)`);
  lines.push(`  matched: ${result.matched}`, `  discrepancies: ${result.discrepancies.length}`);
  for (const d of result.discrepancies) {
    const amounts = `bill ${d.bill_fen === null ? '-' : formatYuan(d.bill_fen)}, backend ${d.backend_fen === null ? '-' : formatYuan(d.backend_fen)}`;
    lines.push(
      '',
      `${d.kind} ${d.out_trade_no}${d.out_refund_no ? ` refund ${d.out_refund_no}` : ''} box ${d.box ?? '-'} ref ${d.ref ?? '-'} (${amounts})`,
      `  ${d.what}`,
      `  to do: ${d.to_do}`,
    );
  }
  return lines;
}
