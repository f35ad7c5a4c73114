import type { Sale } from '../../src/journal/journal.js';
import type { LedgerEntry } from '../../src/simulator/gateway.js';

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
}

/**
 * The money rules (contract §6) on a stopped lane: the journal, the simulator's ledger and the register
 * transcript compared with each other. Pure: every broken rule is one line in `violations`.
 */
export function checkMoneyRules(input: MoneyRulesInput): { violations: string[]; counts: LaneCounts } {
  const violations: string[] = [];
  const violation = (text: string): void => {
    violations.push(text);
  };
  const counts: LaneCounts = { sales: 0, paid: 0, reversed: 0, failed: 0, chargedAndReported: 0, refunded: 0 };
  const { quickCheck: quick, unfinished, sales, ledger, registerLines } = input;
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
    if (verb !== 'FAILED') continue;
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
  return { violations, counts };
}
