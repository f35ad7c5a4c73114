import t, { type Test } from 'tap';
import type { Sale } from '../../src/journal/journal.js';
import type { Refund } from '../../src/journal/refunds.js';
import type { LedgerEntry, RefundEntry } from '../../src/simulator/gateway.js';
import { checkMoneyRules, type LaneCounts, type MoneyRulesInput } from '../tooling/money-rules.js';

// Hand-written journals, ledgers and register transcripts for the crash matrix's money-rule checker: a
// consistent history passes, and each broken rule is reported with its own message.

const OTN1 = 'BENCH01000000000001';
const OTN2 = 'BENCH01000000000002';
const OTN3 = 'BENCH01000000000003';
const TX1 = '4200000001202611290000000001';
const TX2 = '4200000001202611290000000002';
const T0 = 1_764_400_000_000;

function sale(id: number, over: Partial<Sale> & Pick<Sale, 'ref' | 'outTradeNo' | 'state'>): Sale {
  return {
    id,
    amountFen: 100,
    codeMasked: '13**********3456',
    transactionId: null,
    finalCode: null,
    finalText: null,
    reverseReason: null,
    reverseAttempts: 0,
    nextReverseAt: null,
    submittedAt: T0 + id * 1000,
    paidAt: over.state === 'paid' ? T0 + id * 1000 + 400 : null,
    createdAt: T0 + id * 1000,
    updatedAt: T0 + id * 1000 + 500,
    ...over,
  };
}

function entry(over: Partial<LedgerEntry> & Pick<LedgerEntry, 'outTradeNo' | 'attach' | 'state'>): LedgerEntry {
  return {
    totalFee: 100,
    codeMasked: '13**********3456',
    charged: false,
    everCharged: false,
    reversed: false,
    refundedFen: 0,
    transactionId: null,
    micropayCount: 1,
    queryCount: 0,
    reverseCount: 0,
    createdAt: T0,
    ...over,
  };
}

function refund(id: number, over: Partial<Refund> & Pick<Refund, 'rid' | 'amountFen' | 'state'>): Refund {
  return {
    id,
    saleId: 1,
    ref: 'R1',
    outTradeNo: OTN1,
    saleAmountFen: 100,
    outRefundNo: orn(id),
    source: 'register',
    refundId: null,
    finalCode: null,
    finalText: null,
    attempts: 1,
    nextAttemptAt: null,
    createdAt: T0 + 60_000 + id * 1000,
    updatedAt: T0 + 60_000 + id * 1000 + 500,
    ...over,
  };
}

function refundEntry(over: Partial<RefundEntry> & Pick<RefundEntry, 'outRefundNo' | 'refundFee'>): RefundEntry {
  return {
    refundId: '50000000012026112900000000' + over.outRefundNo.slice(-3),
    outTradeNo: OTN1,
    transactionId: TX1,
    totalFee: 100,
    status: 'SUCCESS',
    refundDesc: null,
    requestedAt: T0 + 60_000,
    successAt: T0 + 60_000,
    requestCount: 1,
    queryCount: 1,
    ...over,
  };
}

const orn = (id: number): string => `BENCH01R${String(id).padStart(8, '0')}`;

// R1 paid; R2 charged after the password and given back by a reversal (not confirmed in time); R3 refused.
const paidSale = (): Sale => sale(1, { ref: 'R1', outTradeNo: OTN1, state: 'paid', transactionId: TX1 });
const reversedSale = (): Sale =>
  sale(2, {
    ref: 'R2',
    outTradeNo: OTN2,
    state: 'reversed',
    transactionId: null,
    reverseReason: 'TIMEOUT_REVERSED',
    reverseAttempts: 1,
    finalCode: 'TIMEOUT_REVERSED',
    finalText: 'Password not entered in time: order reversed, nothing charged',
  });
const failedSale = (): Sale =>
  sale(3, { ref: 'R3', outTradeNo: OTN3, state: 'failed', finalCode: 'NOTENOUGH', finalText: 'Insufficient balance' });

const paidEntry = (): LedgerEntry =>
  entry({ outTradeNo: OTN1, attach: 'R1', state: 'SUCCESS', charged: true, everCharged: true, transactionId: TX1, queryCount: 1 });
const reversedEntry = (): LedgerEntry =>
  entry({
    outTradeNo: OTN2,
    attach: 'R2',
    state: 'REVOKED',
    charged: false,
    everCharged: true,
    reversed: true,
    refundedFen: 100,
    transactionId: TX2,
    queryCount: 3,
    reverseCount: 1,
  });
const failedEntry = (): LedgerEntry => entry({ outTradeNo: OTN3, attach: 'R3', state: 'FAILED' });

const PAID_R1 = `PAID R1 ${OTN1} ${TX1}`;
const FAILED_R2 = 'FAILED R2 TIMEOUT_REVERSED Password not entered in time: order reversed, nothing charged';
const FAILED_R3 = 'FAILED R3 NOTENOUGH Insufficient balance';

// The refunds of R1 (100 fen): K1 30 fen accepted and arrived; K2 20 fen refused by WeChat Pay (the merchant's
// balance); K3 80 fen refused by the box (more than is left: nothing recorded); K4 40 fen not confirmed at
// first (REFUND_PENDING), then accepted and still PROCESSING. 70 fen refunded, 30 left.
const K1 = () => refund(1, { rid: 'K1', amountFen: 30, state: 'succeeded', refundId: '50000000012026112900000000001' });
const K2 = () => refund(2, { rid: 'K2', amountFen: 20, state: 'failed', finalCode: 'NOTENOUGH', finalText: 'Merchant balance short' });
const K4 = () => refund(4, { rid: 'K4', amountFen: 40, state: 'accepted', attempts: 3, refundId: '50000000012026112900000000004' });
const REFUNDED_K1 = `REFUNDED K1 R1 30 ${orn(1)}`;
const FAILED_K2 = 'FAILED K2 NOTENOUGH Merchant balance short';
const FAILED_K3 = 'FAILED K3 OVER_AMOUNT More than is left to refund (0.30 yuan left)';
const PENDING_K4 = 'FAILED K4 REFUND_PENDING Refund not confirmed yet';
const REFUNDED_K4 = `REFUNDED K4 R1 40 ${orn(4)}`;

function consistent(): MoneyRulesInput {
  return {
    quickCheck: 'ok',
    unfinished: [],
    sales: [paidSale(), reversedSale(), failedSale()],
    ledger: [{ ...paidEntry(), refundedFen: 70 }, reversedEntry(), failedEntry()],
    registerLines: ['READY', PAID_R1, FAILED_R2, FAILED_R3, 'ACK K1', REFUNDED_K1, 'ACK K2', FAILED_K2, 'ACK K3', FAILED_K3, 'ACK K4', PENDING_K4, REFUNDED_K1, REFUNDED_K4],
    refunds: [K1(), K2(), K4()],
    refundLedger: [refundEntry({ outRefundNo: orn(1), refundFee: 30 }), refundEntry({ outRefundNo: orn(4), refundFee: 40, status: 'PROCESSING', successAt: null })],
    rids: ['K1', 'K2', 'K3', 'K4'],
  };
}

const CONSISTENT_COUNTS: LaneCounts = {
  sales: 3,
  paid: 1,
  reversed: 1,
  failed: 1,
  chargedAndReported: 1,
  refunded: 1,
  refunds: 3,
  refundsAccepted: 2,
  refundsFailed: 1,
};

/** The checker reports exactly these violations, in this order. */
function expectViolations(t: Test, input: MoneyRulesInput, expected: (string | RegExp)[]): LaneCounts {
  const { violations, counts } = checkMoneyRules(input);
  t.equal(violations.length, expected.length, `${expected.length} violation(s): ${JSON.stringify(violations)}`);
  expected.forEach((want, i) => t.match(violations[i], want));
  return counts;
}

t.test('a consistent history breaks no rule', (t) => {
  const { violations, counts } = checkMoneyRules(consistent());
  t.strictSame(violations, []);
  t.strictSame(counts, CONSISTENT_COUNTS);
  t.end();
});

t.test('REVERSE_PENDING told to the register is backed by a reversal that was tried', (t) => {
  const input = consistent();
  input.registerLines = ['READY', PAID_R1, 'FAILED R2 REVERSE_PENDING Payment not confirmed: reversal pending', FAILED_R3];
  t.strictSame(checkMoneyRules(input).violations, []);
  input.sales[1]!.reverseAttempts = 0;
  expectViolations(t, input, [/^register got "FAILED R2 REVERSE_PENDING .*" but no sale of R2 ended REVERSE_PENDING \(reversed TIMEOUT_REVERSED\)$/]);
  t.end();
});

t.test('charged, but the register never got its PAID line', (t) => {
  const input = consistent();
  input.registerLines = ['READY', FAILED_R2, FAILED_R3];
  const counts = expectViolations(t, input, [`R1 ${OTN1}: charged 100 fen, the register never got its PAID line`]);
  t.equal(counts.chargedAndReported, 0);
  t.end();
});

t.test('a PAID line with another transaction_id does not count as told', (t) => {
  const input = consistent();
  const wrong = `PAID R1 ${OTN1} ${TX2}`;
  input.registerLines = ['READY', wrong, FAILED_R2, FAILED_R3];
  expectViolations(t, input, [
    `R1 ${OTN1}: charged 100 fen, the register never got its PAID line`,
    `register got "${wrong}" but WeChat Pay shows charged=true reversed=false attach=R1`,
  ]);
  t.end();
});

t.test('one REF charged twice', (t) => {
  // A second attempt of R1 went through as well: two paid sales, two charges, two PAID lines.
  const input = consistent();
  const otn4 = 'BENCH01000000000004';
  const tx4 = '4200000001202611290000000004';
  input.sales.push(sale(4, { ref: 'R1', outTradeNo: otn4, state: 'paid', transactionId: tx4 }));
  input.ledger.push(entry({ outTradeNo: otn4, attach: 'R1', state: 'SUCCESS', charged: true, everCharged: true, transactionId: tx4 }));
  input.registerLines = [...input.registerLines, `PAID R1 ${otn4} ${tx4}`];
  const counts = expectViolations(t, input, [
    `R1: a new attempt ${otn4} was opened after ${OTN1} was paid`,
    `R1: charged 2 times (${OTN1}, ${otn4})`,
  ]);
  t.equal(counts.paid, 2);
  t.equal(counts.chargedAndReported, 2);
  t.end();
});

t.test('journal says paid, but the ledger holds no charge', (t) => {
  const input = consistent();
  input.ledger = [reversedEntry(), failedEntry()];
  input.registerLines = ['READY', FAILED_R2, FAILED_R3];
  expectViolations(t, input, [`R1 ${OTN1}: journal says paid, WeChat Pay holds no charge`]);
  t.end();
});

t.test('journal says paid, the ledger order was reversed, the register was told PAID', (t) => {
  const input = consistent();
  input.ledger[0] = { ...paidEntry(), state: 'REVOKED', charged: false, reversed: true, refundedFen: 100 };
  const counts = expectViolations(t, input, [
    `R1 ${OTN1}: journal says paid, WeChat Pay holds no charge`,
    `register got "${PAID_R1}" but WeChat Pay shows charged=false reversed=true attach=R1`,
  ]);
  t.equal(counts.refunded, 2);
  t.end();
});

t.test('journal says reversed, but the payer is still charged', (t) => {
  const input = consistent();
  input.ledger[1] = { ...reversedEntry(), state: 'SUCCESS', charged: true, reversed: false, refundedFen: 0 };
  const counts = expectViolations(t, input, [
    `R2 ${OTN2}: journal says reversed TIMEOUT_REVERSED, the payer is still charged`,
    `R2 ${OTN2}: charged, but the journal says reversed TIMEOUT_REVERSED`,
    `R2 ${OTN2}: charged 100 fen, the register never got its PAID line`,
  ]);
  t.equal(counts.refunded, 0);
  t.end();
});

t.test('journal says failed, but the payer is still charged', (t) => {
  const input = consistent();
  input.ledger[2] = { ...failedEntry(), state: 'SUCCESS', charged: true, everCharged: true, transactionId: TX2 };
  expectViolations(t, input, [
    `R3 ${OTN3}: journal says failed NOTENOUGH, the payer is still charged`,
    `R3 ${OTN3}: charged, but the journal says failed NOTENOUGH`,
    `R3 ${OTN3}: charged 100 fen, the register never got its PAID line`,
  ]);
  t.end();
});

t.test('journal says paid with another transaction_id than the charge', (t) => {
  const input = consistent();
  input.sales[0] = { ...paidSale(), transactionId: TX2 };
  expectViolations(t, input, [`R1 ${OTN1}: charged, but the journal says paid `]);
  t.end();
});

t.test('a new attempt opened after a paid one', (t) => {
  const input = consistent();
  const otn4 = 'BENCH01000000000004';
  input.sales.push(sale(4, { ref: 'R1', outTradeNo: otn4, state: 'failed', finalCode: 'NOTENOUGH', finalText: 'Insufficient balance' }));
  input.ledger.push(entry({ outTradeNo: otn4, attach: 'R1', state: 'FAILED' }));
  const counts = expectViolations(t, input, [`R1: a new attempt ${otn4} was opened after ${OTN1} was paid`]);
  t.equal(counts.failed, 2);
  t.equal(counts.sales, 4);
  t.end();
});

t.test('an order at WeChat Pay that is not in the journal', (t) => {
  const input = consistent();
  const otn9 = 'BENCH01000000000009';
  input.ledger.push(entry({ outTradeNo: otn9, attach: 'R9', state: 'USERPAYING' }));
  expectViolations(t, input, [`WeChat Pay holds order ${otn9} (R9) that is not in the journal`]);
  t.end();
});

t.test('an order at WeChat Pay is looked up in every sale, not only the last of its REF', (t) => {
  // R3 was refused first and paid on a second attempt: both orders are in the journal.
  const input = consistent();
  const otn4 = 'BENCH01000000000004';
  const tx4 = '4200000001202611290000000004';
  input.sales.push(sale(4, { ref: 'R3', outTradeNo: otn4, state: 'paid', transactionId: tx4 }));
  input.ledger.push(entry({ outTradeNo: otn4, attach: 'R3', state: 'SUCCESS', charged: true, everCharged: true, transactionId: tx4 }));
  input.registerLines = [...input.registerLines, `PAID R3 ${otn4} ${tx4}`];
  const { violations, counts } = checkMoneyRules(input);
  t.strictSame(violations, []);
  t.strictSame(counts, { ...CONSISTENT_COUNTS, sales: 4, paid: 2, chargedAndReported: 2 });
  t.end();
});

t.test('FAILED after PAID for the same REF', (t) => {
  // R1 was refused first (told FAILED, backed by the journal), then paid, then told FAILED again.
  const input = consistent();
  const otn0 = 'BENCH01000000000000';
  input.sales.unshift(sale(0, { ref: 'R1', outTradeNo: otn0, state: 'failed', finalCode: 'NOTENOUGH', finalText: 'Insufficient balance' }));
  input.ledger.unshift(entry({ outTradeNo: otn0, attach: 'R1', state: 'FAILED' }));
  const failedR1 = 'FAILED R1 NOTENOUGH Insufficient balance';
  input.registerLines = ['READY', failedR1, PAID_R1, FAILED_R2, FAILED_R3, failedR1];
  expectViolations(t, input, [`register got "${failedR1}" after it was told PAID for R1`]);
  t.end();
});

t.test('a FAILED line not backed by the journal', (t) => {
  const input = consistent();
  const line = 'FAILED R3 SYSTEMERROR System error';
  input.registerLines = ['READY', PAID_R1, FAILED_R2, line];
  expectViolations(t, input, [`register got "${line}" but no sale of R3 ended SYSTEMERROR (failed NOTENOUGH)`]);
  t.end();
});

t.test('a FAILED line for a REF the journal never saw', (t) => {
  const input = consistent();
  const line = 'FAILED R7 CANCELLED Sale cancelled: nothing charged';
  input.registerLines = [...input.registerLines, line];
  expectViolations(t, input, [`register got "${line}" but no sale of R7 ended CANCELLED ()`]);
  t.end();
});

t.test('a PAID line for an order WeChat Pay does not hold', (t) => {
  const input = consistent();
  const otn5 = 'BENCH01000000000005';
  const line = `PAID R5 ${otn5} 4200000001202611290000000005`;
  input.registerLines = [...input.registerLines, line];
  expectViolations(t, input, [`register got "${line}" but WeChat Pay has no such order`]);
  t.end();
});

t.test('a PAID line for an order WeChat Pay holds but not as charged', (t) => {
  const input = consistent();
  const line = `PAID R2 ${OTN2} ${TX2}`;
  input.registerLines = ['READY', PAID_R1, line, FAILED_R3];
  expectViolations(t, input, [`register got "${line}" but WeChat Pay shows charged=false reversed=true attach=R2`]);
  t.end();
});

t.test('PRAGMA quick_check not ok', (t) => {
  const input = consistent();
  input.quickCheck = 'row 3 missing from index sales_ref';
  const counts = expectViolations(t, input, ['PRAGMA quick_check: row 3 missing from index sales_ref']);
  t.strictSame(counts, CONSISTENT_COUNTS);
  t.end();
});

t.test('a sale still unfinished', (t) => {
  const input = consistent();
  const otn4 = 'BENCH01000000000004';
  const open = sale(4, { ref: 'R4', outTradeNo: otn4, state: 'polling' });
  input.sales.push(open);
  input.unfinished = [open];
  input.ledger.push(entry({ outTradeNo: otn4, attach: 'R4', state: 'USERPAYING' }));
  const counts = expectViolations(t, input, ['unfinished after recovery and drain: R4 polling']);
  t.equal(counts.sales, 4);
  t.equal(counts.paid + counts.reversed + counts.failed, 3);
  t.end();
});

t.test('a reverse_failed sale', (t) => {
  const input = consistent();
  const text = 'reversal refused (REVERSE_EXPIRE): refund it in the merchant platform';
  input.sales[1] = { ...reversedSale(), state: 'reverse_failed', finalCode: 'REVERSE_PENDING', finalText: text };
  input.ledger[1] = { ...reversedEntry(), state: 'PAYERROR', everCharged: false, reversed: false, refundedFen: 0, transactionId: null };
  input.registerLines = ['READY', PAID_R1, 'FAILED R2 REVERSE_PENDING Payment not confirmed: reversal pending', FAILED_R3];
  const counts = expectViolations(t, input, [`R2 ${OTN2}: reverse_failed (${text})`]);
  t.equal(counts.reversed, 0);
  t.equal(counts.refunded, 0);
  t.end();
});

t.test('every broken rule at once is reported once each', (t) => {
  const input = consistent();
  input.quickCheck = 'database disk image is malformed';
  input.registerLines = ['READY', FAILED_R2, 'FAILED R3 SYSTEMERROR System error'];
  const { violations } = checkMoneyRules(input);
  t.strictSame(violations, [
    'PRAGMA quick_check: database disk image is malformed',
    `R1 ${OTN1}: charged 100 fen, the register never got its PAID line`,
    'register got "FAILED R3 SYSTEMERROR System error" but no sale of R3 ended SYSTEMERROR (failed NOTENOUGH)',
  ]);
  t.end();
});

// ---- refunds (contract §6.6) ----

t.test('a history without refunds breaks no refund rule', (t) => {
  const input = consistent();
  input.refunds = [];
  input.refundLedger = [];
  input.rids = [];
  input.ledger[0] = paidEntry();
  input.registerLines = ['READY', PAID_R1, FAILED_R2, FAILED_R3];
  const { violations, counts } = checkMoneyRules(input);
  t.strictSame(violations, []);
  t.strictSame(counts, { ...CONSISTENT_COUNTS, refunds: 0, refundsAccepted: 0, refundsFailed: 0 });
  t.end();
});

t.test("a refund's FAILED line is told from a sale's by the RIDs the register used", (t) => {
  // K3 was refused by the box before anything was recorded: only the RIDs sent say it is a refund's line.
  const input = consistent();
  input.rids = ['K1', 'K2', 'K4'];
  expectViolations(t, input, [`register got "${FAILED_K3}" but no sale of K3 ended OVER_AMOUNT ()`]);
  t.end();
});

t.test('one RID with two rows in the journal', (t) => {
  const input = consistent();
  input.refunds.push(refund(5, { rid: 'K1', amountFen: 30, state: 'failed', finalCode: 'NOTENOUGH' }));
  const counts = expectViolations(t, input, [`RID K1: 2 refunds in the journal (${orn(1)}, ${orn(5)})`]);
  t.equal(counts.refunds, 4);
  t.end();
});

t.test('one out_refund_no journalled for two RIDs', (t) => {
  const input = consistent();
  input.refunds[1] = { ...K2(), outRefundNo: orn(1) };
  expectViolations(t, input, [
    `out_refund_no ${orn(1)}: journalled for 2 refunds (RIDs K1, K2)`,
    `register got "${FAILED_K2}" but WeChat Pay accepted ${orn(1)} (30 fen)`,
  ]);
  t.end();
});

t.test('two refunds at WeChat Pay under one out_refund_no', (t) => {
  const input = consistent();
  input.refundLedger.push(refundEntry({ outRefundNo: orn(1), refundFee: 30 }));
  // 30 + 30 + 40 fen: not more than the sale, yet one number refunded twice.
  expectViolations(t, input, [`out_refund_no ${orn(1)}: WeChat Pay holds 2 refunds under it (30 + 30 fen)`]);
  t.end();
});

t.test('a refund at WeChat Pay that the journal does not know', (t) => {
  const input = consistent();
  input.refundLedger.push(refundEntry({ outRefundNo: orn(9), refundFee: 20 }));
  expectViolations(t, input, [`WeChat Pay holds refund ${orn(9)} (${OTN1}, 20 fen) that is not in the journal`]);
  t.end();
});

t.test('a refund at WeChat Pay of another amount than the journal says', (t) => {
  const input = consistent();
  input.refundLedger[0] = refundEntry({ outRefundNo: orn(1), refundFee: 25 });
  expectViolations(t, input, [
    `RID K1 ${orn(1)}: WeChat Pay refunded 25 fen of ${OTN1}, the journal says 30 fen of ${OTN1}`,
    `register got "${REFUNDED_K1}" but WeChat Pay refunded 25 fen of ${OTN1} under ${orn(1)}`,
    `register got "${REFUNDED_K1}" but WeChat Pay refunded 25 fen of ${OTN1} under ${orn(1)}`,
  ]);
  t.end();
});

t.test('a refund at WeChat Pay of another sale than the journal says', (t) => {
  const input = consistent();
  input.refundLedger[0] = refundEntry({ outRefundNo: orn(1), refundFee: 30, outTradeNo: OTN3 });
  expectViolations(t, input, [
    `RID K1 ${orn(1)}: WeChat Pay refunded 30 fen of ${OTN3}, the journal says 30 fen of ${OTN1}`,
    `register got "${REFUNDED_K1}" but WeChat Pay refunded 30 fen of ${OTN3} under ${orn(1)}`,
    `register got "${REFUNDED_K1}" but WeChat Pay refunded 30 fen of ${OTN3} under ${orn(1)}`,
  ]);
  t.end();
});

t.test('journal says failed, WeChat Pay accepted the refund', (t) => {
  const input = consistent();
  input.refundLedger.push(refundEntry({ outRefundNo: orn(2), refundFee: 20 }));
  expectViolations(t, input, [
    `RID K2 ${orn(2)}: journal says failed NOTENOUGH, WeChat Pay accepted it (20 fen)`,
    `register got "${FAILED_K2}" but WeChat Pay accepted ${orn(2)} (20 fen)`,
  ]);
  t.end();
});

t.test('journal says accepted, WeChat Pay has no such refund', (t) => {
  const input = consistent();
  input.refundLedger = [input.refundLedger[0]!];
  expectViolations(t, input, [
    `RID K4 ${orn(4)}: journal says accepted, WeChat Pay has no such refund`,
    `register got "${REFUNDED_K4}" but WeChat Pay has no refund ${orn(4)}`,
  ]);
  t.end();
});

t.test('WeChat Pay gave back more than the sale', (t) => {
  const input = consistent();
  input.ledger[0] = { ...paidEntry(), refundedFen: 130 };
  expectViolations(t, input, [`R1 ${OTN1}: WeChat Pay gave back 130 fen of a 100 fen sale`]);
  t.end();
});

t.test('refunds of a sale that add up to more than its amount, at WeChat Pay and in the journal', (t) => {
  const input = consistent();
  input.refunds[2] = { ...K4(), amountFen: 75 };
  input.refundLedger[1] = refundEntry({ outRefundNo: orn(4), refundFee: 75, status: 'PROCESSING', successAt: null });
  input.registerLines = input.registerLines.map((l) => (l === REFUNDED_K4 ? `REFUNDED K4 R1 75 ${orn(4)}` : l));
  expectViolations(t, input, [
    `R1 ${OTN1}: WeChat Pay accepted refunds of 105 fen on a 100 fen sale`,
    `R1 ${OTN1}: the journal holds refunds of 105 fen on a 100 fen sale (K1 30, K4 75)`,
  ]);
  t.end();
});

t.test('a closed refund gives its amount back to refund, a failed one never held it', (t) => {
  // K4 closed by WeChat Pay; K5 refunds the 70 fen left: 100 fen in all, none of it twice.
  const input = consistent();
  input.refunds[2] = { ...K4(), state: 'closed', finalCode: 'REFUNDCLOSE' };
  input.refunds.push(refund(5, { rid: 'K5', amountFen: 70, state: 'succeeded' }));
  input.refundLedger[1] = refundEntry({ outRefundNo: orn(4), refundFee: 40, status: 'REFUNDCLOSE', successAt: null });
  input.refundLedger.push(refundEntry({ outRefundNo: orn(5), refundFee: 70 }));
  input.ledger[0] = { ...paidEntry(), refundedFen: 100 };
  input.registerLines = [...input.registerLines, 'ACK K5', `REFUNDED K5 R1 70 ${orn(5)}`];
  input.rids = [...input.rids, 'K5'];
  const { violations, counts } = checkMoneyRules(input);
  t.strictSame(violations, []);
  t.equal(counts.refundsAccepted, 3);
  t.end();
});

t.test('a refund of a sale the journal does not show as paid', (t) => {
  const input = consistent();
  input.refunds.push(refund(6, { rid: 'K6', saleId: 2, ref: 'R2', outTradeNo: OTN2, amountFen: 10, state: 'failed', finalCode: 'NOTENOUGH' }));
  expectViolations(t, input, [`RID K6 ${orn(6)}: refunds R2 ${OTN2}, which the journal says is reversed`]);
  t.end();
});

t.test('a refund of a sale that is not in the journal', (t) => {
  const input = consistent();
  input.refunds.push(refund(6, { rid: 'K6', saleId: 7, ref: 'R7', amountFen: 10, state: 'failed', finalCode: 'NOTENOUGH' }));
  expectViolations(t, input, [`RID K6 ${orn(6)}: refunds sale 7 (R7) that is not in the journal`]);
  t.end();
});

t.test('a REFUNDED line naming a refund number WeChat Pay does not hold', (t) => {
  const input = consistent();
  const wrong = `REFUNDED K1 R1 30 ${orn(8)}`;
  input.registerLines = input.registerLines.map((l) => (l === REFUNDED_K1 ? wrong : l));
  expectViolations(t, input, [
    `register got "${wrong}" but WeChat Pay has no refund ${orn(8)}`,
    `register got "${wrong}" but the journal's refund number of K1 is ${orn(1)}`,
    `register got "${wrong}" but WeChat Pay has no refund ${orn(8)}`,
    `register got "${wrong}" but the journal's refund number of K1 is ${orn(1)}`,
  ]);
  t.end();
});

t.test('a REFUNDED line with another amount than WeChat Pay refunded', (t) => {
  const input = consistent();
  const wrong = `REFUNDED K4 R1 45 ${orn(4)}`;
  input.registerLines = input.registerLines.map((l) => (l === REFUNDED_K4 ? wrong : l));
  expectViolations(t, input, [`register got "${wrong}" but WeChat Pay refunded 40 fen of ${OTN1} under ${orn(4)}`]);
  t.end();
});

t.test('a REFUNDED line for a RID the journal never recorded', (t) => {
  const input = consistent();
  const line = `REFUNDED K7 R1 10 ${orn(7)}`;
  input.registerLines = [...input.registerLines, 'ACK K7', line];
  input.rids = [...input.rids, 'K7'];
  expectViolations(t, input, [`register got "${line}" but WeChat Pay has no refund ${orn(7)}`, `register got "${line}" but the journal has no refund K7`]);
  t.end();
});

t.test('one RID, two refund numbers heard', (t) => {
  const input = consistent();
  const other = `REFUNDED K1 R1 30 ${orn(4)}`;
  input.registerLines = [...input.registerLines, other];
  expectViolations(t, input, [
    `register got "${other}" but WeChat Pay refunded 40 fen of ${OTN1} under ${orn(4)}`,
    `register got "${other}" but the journal's refund number of K1 is ${orn(1)}`,
    `RID K1: the register heard 2 refund numbers (${orn(1)}, ${orn(4)})`,
  ]);
  t.end();
});

t.test('a FAILED line with a WeChat Pay code the journal does not back', (t) => {
  const input = consistent();
  const line = 'FAILED K2 TRADE_OVERDUE Sale older than a year';
  input.registerLines = [...input.registerLines, line];
  expectViolations(t, input, [`register got "${line}" but the journal's refund K2 is failed NOTENOUGH`]);
  t.end();
});

t.test('a FAILED line with a WeChat Pay code for a refund WeChat Pay accepted', (t) => {
  // K4 was accepted; the register was told it was refused (before it was told REFUNDED).
  const input = consistent();
  const line = 'FAILED K4 NOTENOUGH Merchant balance short';
  input.registerLines = input.registerLines.map((l) => (l === PENDING_K4 ? line : l));
  expectViolations(t, input, [
    `register got "${line}" but the journal's refund K4 is accepted`,
    `register got "${line}" but WeChat Pay accepted ${orn(4)} (40 fen)`,
  ]);
  t.end();
});

t.test('a FAILED line for a RID the journal never recorded', (t) => {
  const input = consistent();
  const line = 'FAILED K9 REFUND_PENDING Refund not confirmed yet';
  input.registerLines = [...input.registerLines, 'ACK K9', line];
  input.rids = [...input.rids, 'K9'];
  expectViolations(t, input, [`register got "${line}" but the journal has no refund K9`]);
  t.end();
});

t.test('FAILED after REFUNDED for the same RID', (t) => {
  const input = consistent();
  const line = 'FAILED K1 REFUND_PENDING Refund not confirmed yet';
  input.registerLines = [...input.registerLines, line];
  expectViolations(t, input, [`register got "${line}" after it was told "${REFUNDED_K1}"`]);
  t.end();
});

t.test('a refund still submitted at the end', (t) => {
  // WeChat Pay accepted K4, but the box never found out: left submitted, REFUND_PENDING.
  const input = consistent();
  input.refunds[2] = { ...K4(), state: 'submitted', finalCode: 'REFUND_PENDING', finalText: 'Refund not confirmed yet' };
  input.registerLines = input.registerLines.filter((l) => l !== REFUNDED_K4);
  const counts = expectViolations(t, input, [`refunds unfinished after recovery and the refund queue: K4 ${orn(4)} submitted REFUND_PENDING`]);
  t.equal(counts.refundsAccepted, 1);
  t.end();
});

t.test('a refund still requested at the end', (t) => {
  const input = consistent();
  input.refunds.push(refund(5, { rid: 'K5', amountFen: 10, state: 'requested', attempts: 0 }));
  input.rids = [...input.rids, 'K5'];
  expectViolations(t, input, [`refunds unfinished after recovery and the refund queue: K5 ${orn(5)} requested`]);
  t.end();
});
