import t, { type Test } from 'tap';
import type { Sale } from '../../src/journal/journal.js';
import type { LedgerEntry } from '../../src/simulator/gateway.js';
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

function consistent(): MoneyRulesInput {
  return {
    quickCheck: 'ok',
    unfinished: [],
    sales: [paidSale(), reversedSale(), failedSale()],
    ledger: [paidEntry(), reversedEntry(), failedEntry()],
    registerLines: ['READY', PAID_R1, FAILED_R2, FAILED_R3],
  };
}

const CONSISTENT_COUNTS: LaneCounts = { sales: 3, paid: 1, reversed: 1, failed: 1, chargedAndReported: 1, refunded: 1 };

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
  t.strictSame(counts, { sales: 4, paid: 2, reversed: 1, failed: 1, chargedAndReported: 2, refunded: 1 });
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
