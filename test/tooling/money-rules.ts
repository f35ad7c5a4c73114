import type { Sale } from '../../src/journal/journal.js';
import type { Refund } from '../../src/journal/refunds.js';
import type { LedgerEntry, RefundEntry } from '../../src/simulator/gateway.js';

/**
 * The crash matrix's money-rule checker (contract §6), apart from the engine that drives the daemon
 * (soak.ts), so that test/simulator/money-rules.test.ts can feed it hand-made histories.
 */

export interface LaneCounts {
  sales: number;
  paid: number;
  reversed: number;
  failed: number;
  chargedAndReported: number;
  refunded: number;
  /** Refunds in the journal (one row per RID). */
  refunds: number;
  /** Of those, accepted by WeChat Pay (accepted, succeeded, closed, change). */
  refundsAccepted: number;
  /** Of those, refused by WeChat Pay for good (failed). */
  refundsFailed: number;
}

export interface MoneyRulesInput {
  /** What PRAGMA quick_check answered on the journal ('ok' when sound). */
  quickCheck: string;
  /** The journal's sales that are not final. */
  unfinished: Sale[];
  /** Every sale in the journal, oldest first. */
  sales: Sale[];
  /** The gateway simulator's ledger. */
  ledger: LedgerEntry[];
  /** What the register heard, one line each (`PAID REF OUT_TRADE_NO TRANSACTION_ID`, `FAILED REF CODE TEXT`, ...). */
  registerLines: readonly string[];
  /** Every refund in the journal (any order). */
  refunds: Refund[];
  /** The gateway simulator's refund ledger: every refund WeChat Pay accepted. */
  refundLedger: RefundEntry[];
  /**
   * Every RID the register sent a REFUND or QUERY REFUND for. REF and RID have the same syntax, so this (with
   * the journal's RIDs) is how a `FAILED RID CODE TEXT` line is told from a sale's `FAILED REF CODE TEXT`.
   */
  rids: readonly string[];
}

/** Refund FAILED codes the box decides itself, recording nothing (contract §3); every other one is WeChat Pay's. */
const BOX_REFUND_CODES: ReadonlySet<string> = new Set(['REFUNDS_OFF', 'NOT_PAID', 'OVER_AMOUNT', 'REFUND_LIMIT', 'OFFLINE']);
const ACCEPTED: ReadonlySet<string> = new Set(['accepted', 'succeeded', 'closed', 'change']);
/** What counts against a sale's refundable amount: everything but a refund that refunded nothing. */
const holdsMoney = (refund: Refund): boolean => refund.state !== 'failed' && refund.state !== 'closed';

/**
 * The money rules (contract §6) on a stopped lane: the journal, the simulator's ledger and the register
 * transcript compared with each other. Pure: every broken rule is one line in `violations`.
 */
export function checkMoneyRules(input: MoneyRulesInput): { violations: string[]; counts: LaneCounts } {
  const violations: string[] = [];
  const violation = (text: string): void => {
    violations.push(text);
  };
  const counts: LaneCounts = {
    sales: 0,
    paid: 0,
    reversed: 0,
    failed: 0,
    chargedAndReported: 0,
    refunded: 0,
    refunds: 0,
    refundsAccepted: 0,
    refundsFailed: 0,
  };
  const { quickCheck: quick, unfinished, sales, ledger, registerLines } = input;
  const refundRids = new Set<string>([...input.rids, ...input.refunds.map((r) => r.rid)]);
  const saleByOtn = new Map<string, Sale>(sales.map((s) => [s.outTradeNo, s]));

  if (quick !== 'ok') violation(`PRAGMA quick_check: ${quick}`);
  if (unfinished.length > 0) violation(`unfinished after recovery and drain: ${unfinished.map((s) => `${s.ref} ${s.state}`).join(', ')}`);
  const byOtn = new Map<string, LedgerEntry>(ledger.map((e) => [e.outTradeNo, e]));
  const paidLines = registerLines
    .filter((l) => l.startsWith('PAID '))
    .map((l) => {
      const [, ref, otn, txid] = l.split(' ');
      return { line: l, ref: ref!, otn: otn!, txid: txid! };
    });

  counts.sales = sales.length;
  for (const sale of sales) {
    if (sale.state === 'paid') counts.paid++;
    else if (sale.state === 'reversed') counts.reversed++;
    else if (sale.state === 'failed') counts.failed++;
    else if (sale.state === 'reverse_failed') violation(`${sale.ref} ${sale.outTradeNo}: reverse_failed (${sale.finalText})`);
    const entry = byOtn.get(sale.outTradeNo);
    if (sale.state === 'paid' && !entry?.charged) {
      violation(`${sale.ref} ${sale.outTradeNo}: journal says paid, WeChat Pay holds no charge`);
    }
    if ((sale.state === 'failed' || sale.state === 'reversed') && entry?.charged) {
      violation(`${sale.ref} ${sale.outTradeNo}: journal says ${sale.state} ${sale.finalCode}, the payer is still charged`);
    }
  }
  // One REF, one paid sale: nothing new is opened for a REF once it was paid.
  const paidRefs = new Map<string, Sale>();
  for (const sale of sales) {
    const paid = paidRefs.get(sale.ref);
    if (paid) violation(`${sale.ref}: a new attempt ${sale.outTradeNo} was opened after ${paid.outTradeNo} was paid`);
    if (sale.state === 'paid' && !paid) paidRefs.set(sale.ref, sale);
  }

  const chargesByRef = new Map<string, LedgerEntry[]>();
  for (const entry of ledger) {
    const sale = saleByOtn.get(entry.outTradeNo);
    if (!sale) violation(`WeChat Pay holds order ${entry.outTradeNo} (${entry.attach}) that is not in the journal`);
    if (entry.everCharged && !entry.charged) counts.refunded++;
    if (!entry.charged) continue;
    const list = chargesByRef.get(entry.attach ?? '') ?? [];
    list.push(entry);
    chargesByRef.set(entry.attach ?? '', list);
    if (sale && (sale.state !== 'paid' || sale.transactionId !== entry.transactionId)) {
      violation(`${entry.attach} ${entry.outTradeNo}: charged, but the journal says ${sale.state} ${sale.finalCode ?? ''}`);
    }
    const told = paidLines.some((p) => p.otn === entry.outTradeNo && p.ref === entry.attach && p.txid === entry.transactionId);
    if (told) counts.chargedAndReported++;
    else violation(`${entry.attach} ${entry.outTradeNo}: charged ${entry.totalFee} fen, the register never got its PAID line`);
  }
  for (const [ref, list] of chargesByRef) {
    if (list.length > 1) violation(`${ref}: charged ${list.length} times (${list.map((e) => e.outTradeNo).join(', ')})`);
  }
  // A FAILED line is the truth too: it names how a sale of that REF ended in the journal, and no REF
  // the register was told PAID is ever told FAILED afterwards.
  const toldPaid = new Set<string>();
  for (const line of registerLines) {
    const [verb, ref, code] = line.split(' ');
    if (verb === 'PAID') toldPaid.add(ref!);
    if (verb !== 'FAILED' || refundRids.has(ref!)) continue;
    if (toldPaid.has(ref!)) violation(`register got "${line}" after it was told PAID for ${ref}`);
    const attempts = sales.filter((s) => s.ref === ref);
    const backed = attempts.some(
      (s) => s.finalCode === code || (code === 'REVERSE_PENDING' && (s.state === 'reversed' || s.state === 'reversing') && s.reverseAttempts > 0),
    );
    if (!backed) violation(`register got "${line}" but no sale of ${ref} ended ${code} (${attempts.map((s) => `${s.state} ${s.finalCode}`).join(', ')})`);
  }
  for (const p of paidLines) {
    const entry = byOtn.get(p.otn);
    if (!entry || !entry.charged || entry.attach !== p.ref || entry.transactionId !== p.txid) {
      violation(
        `register got "${p.line}" but WeChat Pay ${entry ? `shows charged=${entry.charged} reversed=${entry.reversed} attach=${entry.attach}` : 'has no such order'}`,
      );
    }
  }
  checkRefundRules(input, refundRids, counts, violation);
  return { violations, counts };
}

/**
 * Contract §6.6 on a stopped lane: one RID refunds at most once, under one out_refund_no; WeChat Pay holds no
 * refund the journal does not know; the refunds of a sale never add up to more than its amount; what the
 * register heard for each RID is the truth; nothing is left requested or submitted once recovery and the
 * refund queue ran.
 */
function checkRefundRules(input: MoneyRulesInput, rids: ReadonlySet<string>, counts: LaneCounts, violation: (text: string) => void): void {
  const { refunds, refundLedger, ledger, sales, registerLines } = input;
  counts.refunds = refunds.length;
  for (const refund of refunds) {
    if (ACCEPTED.has(refund.state)) counts.refundsAccepted++;
    else if (refund.state === 'failed') counts.refundsFailed++;
  }

  // The journal: one row per RID, one RID per out_refund_no.
  const rowsByRid = new Map<string, Refund[]>();
  const rowsByNo = new Map<string, Refund[]>();
  for (const refund of refunds) {
    rowsByRid.set(refund.rid, [...(rowsByRid.get(refund.rid) ?? []), refund]);
    rowsByNo.set(refund.outRefundNo, [...(rowsByNo.get(refund.outRefundNo) ?? []), refund]);
  }
  for (const [rid, rows] of rowsByRid) {
    if (rows.length > 1) violation(`RID ${rid}: ${rows.length} refunds in the journal (${rows.map((r) => r.outRefundNo).join(', ')})`);
  }
  for (const [no, rows] of rowsByNo) {
    if (rows.length > 1) violation(`out_refund_no ${no}: journalled for ${rows.length} refunds (RIDs ${rows.map((r) => r.rid).join(', ')})`);
  }
  // The first row of each (a second one is reported above).
  const byRid = new Map<string, Refund>([...rowsByRid].map(([rid, rows]) => [rid, rows[0]!]));
  const byNo = new Map<string, Refund>([...rowsByNo].map(([no, rows]) => [no, rows[0]!]));

  // Nothing left half-way once recovery and the refund queue ran (accepted ones are only being followed).
  const open = refunds.filter((r) => r.state === 'requested' || r.state === 'submitted');
  if (open.length > 0) {
    violation(`refunds unfinished after recovery and the refund queue: ${open.map((r) => `${r.rid} ${r.outRefundNo} ${r.state}${r.finalCode ? ` ${r.finalCode}` : ''}`).join(', ')}`);
  }

  // WeChat Pay: at most one refund per out_refund_no, each one the journal knows, for that sale and amount.
  const atGatewayByNo = new Map<string, RefundEntry[]>();
  for (const entry of refundLedger) atGatewayByNo.set(entry.outRefundNo, [...(atGatewayByNo.get(entry.outRefundNo) ?? []), entry]);
  for (const [no, list] of atGatewayByNo) {
    if (list.length > 1) violation(`out_refund_no ${no}: WeChat Pay holds ${list.length} refunds under it (${list.map((e) => e.refundFee).join(' + ')} fen)`);
  }
  for (const entry of refundLedger) {
    const refund = byNo.get(entry.outRefundNo);
    if (!refund) {
      violation(`WeChat Pay holds refund ${entry.outRefundNo} (${entry.outTradeNo}, ${entry.refundFee} fen) that is not in the journal`);
      continue;
    }
    if (refund.outTradeNo !== entry.outTradeNo || refund.amountFen !== entry.refundFee) {
      violation(
        `RID ${refund.rid} ${entry.outRefundNo}: WeChat Pay refunded ${entry.refundFee} fen of ${entry.outTradeNo}, the journal says ${refund.amountFen} fen of ${refund.outTradeNo}`,
      );
    }
    if (refund.state === 'failed') violation(`RID ${refund.rid} ${entry.outRefundNo}: journal says failed ${refund.finalCode ?? ''}, WeChat Pay accepted it (${entry.refundFee} fen)`);
  }
  for (const refund of refunds) {
    if (ACCEPTED.has(refund.state) && !atGatewayByNo.has(refund.outRefundNo)) {
      violation(`RID ${refund.rid} ${refund.outRefundNo}: journal says ${refund.state}, WeChat Pay has no such refund`);
    }
  }

  // Never more than the sale: at WeChat Pay (its own count and the refunds it lists) and in the journal.
  const gatewayRefundedOf = new Map<string, number>();
  for (const entry of refundLedger) {
    if (entry.status !== 'REFUNDCLOSE') gatewayRefundedOf.set(entry.outTradeNo, (gatewayRefundedOf.get(entry.outTradeNo) ?? 0) + entry.refundFee);
  }
  for (const entry of ledger) {
    if (entry.refundedFen > entry.totalFee) violation(`${entry.attach} ${entry.outTradeNo}: WeChat Pay gave back ${entry.refundedFen} fen of a ${entry.totalFee} fen sale`);
    const listed = gatewayRefundedOf.get(entry.outTradeNo) ?? 0;
    if (listed > entry.totalFee) violation(`${entry.attach} ${entry.outTradeNo}: WeChat Pay accepted refunds of ${listed} fen on a ${entry.totalFee} fen sale`);
  }
  const salesById = new Map<number, Sale>(sales.map((s) => [s.id, s]));
  const heldOf = new Map<number, Refund[]>();
  for (const refund of refunds) {
    const sale = salesById.get(refund.saleId);
    if (!sale) violation(`RID ${refund.rid} ${refund.outRefundNo}: refunds sale ${refund.saleId} (${refund.ref}) that is not in the journal`);
    else if (sale.state !== 'paid') violation(`RID ${refund.rid} ${refund.outRefundNo}: refunds ${sale.ref} ${sale.outTradeNo}, which the journal says is ${sale.state}`);
    if (holdsMoney(refund)) heldOf.set(refund.saleId, [...(heldOf.get(refund.saleId) ?? []), refund]);
  }
  for (const [saleId, held] of heldOf) {
    const fen = held.reduce((sum, r) => sum + r.amountFen, 0);
    const amount = salesById.get(saleId)?.amountFen ?? held[0]!.saleAmountFen;
    if (fen > amount) {
      violation(`${held[0]!.ref} ${held[0]!.outTradeNo}: the journal holds refunds of ${fen} fen on a ${amount} fen sale (${held.map((r) => `${r.rid} ${r.amountFen}`).join(', ')})`);
    }
  }

  // What the register heard for each RID.
  const toldRefunded = new Map<string, string>();
  const numbersOf = new Map<string, Set<string>>();
  for (const line of registerLines) {
    const [verb, rid, second, third, fourth] = line.split(' ');
    if ((verb !== 'REFUNDED' && verb !== 'FAILED') || !rids.has(rid!)) continue;
    const refund = byRid.get(rid!);
    if (verb === 'REFUNDED') {
      const [ref, amount, no] = [second!, Number(third), fourth!];
      const numbers = numbersOf.get(rid!) ?? new Set<string>();
      numbers.add(no);
      numbersOf.set(rid!, numbers);
      toldRefunded.set(rid!, line);
      const entries = atGatewayByNo.get(no) ?? [];
      const sale = refund ? salesById.get(refund.saleId) : undefined;
      const backed = entries.some((e) => e.refundFee === amount && (sale === undefined || (e.outTradeNo === sale.outTradeNo && sale.ref === ref)));
      if (!backed) {
        violation(
          `register got "${line}" but WeChat Pay ${entries.length === 0 ? `has no refund ${no}` : `refunded ${entries.map((e) => `${e.refundFee} fen of ${e.outTradeNo}`).join(', ')} under ${no}`}`,
        );
      }
      if (!refund) violation(`register got "${line}" but the journal has no refund ${rid}`);
      else if (refund.outRefundNo !== no) violation(`register got "${line}" but the journal's refund number of ${rid} is ${refund.outRefundNo}`);
      continue;
    }
    const code = second!;
    const after = toldRefunded.get(rid!);
    if (after) violation(`register got "${line}" after it was told "${after}"`);
    if (BOX_REFUND_CODES.has(code)) continue;
    // REFUND_PENDING: the box is still asking; otherwise WeChat Pay refused it and holds nothing under its number.
    if (!refund) {
      violation(`register got "${line}" but the journal has no refund ${rid}`);
      continue;
    }
    if (code === 'REFUND_PENDING') continue;
    if (refund.state !== 'failed' || refund.finalCode !== code) {
      violation(`register got "${line}" but the journal's refund ${rid} is ${refund.state} ${refund.finalCode ?? ''}`.trimEnd());
    }
    const entries = atGatewayByNo.get(refund.outRefundNo) ?? [];
    if (entries.length > 0) violation(`register got "${line}" but WeChat Pay accepted ${refund.outRefundNo} (${entries.map((e) => e.refundFee).join(' + ')} fen)`);
  }
  for (const [rid, numbers] of numbersOf) {
    if (numbers.size > 1) violation(`RID ${rid}: the register heard ${numbers.size} refund numbers (${[...numbers].join(', ')})`);
  }
}
