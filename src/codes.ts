import { MICROPAY_CODES, micropayAction } from './wechatpay/codes.js';

/**
 * The box's own result codes (contract §3) and what the cashier reads for every code on the register line
 * after `FAILED REF CODE`: the box's codes, and WeChat Pay's err_codes and trade states, which pass through
 * unchanged.
 */
export type BoxCode =
  | 'CANCELLED'
  | 'NO_SCAN'
  | 'NOT_WECHAT_CODE'
  | 'TIMEOUT_REVERSED'
  | 'REVERSED'
  | 'INTERRUPTED'
  | 'REVERSE_PENDING'
  | 'OFFLINE';

const CONFIG_TEXT = (code: string): string => `Configuration error at WeChat Pay (${code}): call the technician`;

/** ASCII, one line, at most 100 characters: it goes to the register display after `FAILED REF CODE`. */
const TEXTS: ReadonlyMap<string, string> = new Map<string, string>([
  // WeChat Pay, result not known yet
  ['SYSTEMERROR', 'WeChat Pay system error: checking the payment, please wait'],
  ['BANKERROR', 'Bank system error: checking the payment, please wait'],
  ['USERPAYING', 'Waiting for the customer to enter the payment password in WeChat'],
  ['ORDERPAID', 'Order already paid'],
  // WeChat Pay, definite failures the cashier can act on
  ['AUTHCODEEXPIRE', 'Payment code expired: ask the customer to refresh the code and scan again'],
  ['AUTH_CODE_ERROR', 'Payment code already used: ask the customer to refresh the code and scan again'],
  ['AUTH_CODE_INVALID', 'Invalid payment code: ask the customer to show the WeChat Pay payment code'],
  ['NOTENOUGH', 'Insufficient balance: ask the customer to pay with another card'],
  ['NOTSUPORTCARD', 'Card not supported: ask the customer to switch or bind another card'],
  ['BUYER_MISMATCH', 'A different payer used this order: start the sale again'],
  ['TRADE_ERROR', 'Payment refused by WeChat Pay: ask the customer to pay another way'],
  ['ORDERCLOSED', 'Order closed at WeChat Pay: start the sale again'],
  ['ORDERREVERSED', 'Order already reversed at WeChat Pay: start the sale again'],
  ['ORDERNOTEXIST', 'Order not found at WeChat Pay: nothing charged'],
  ['REVERSE_EXPIRE', 'Order too old to reverse: refund it on the merchant platform'],
  // the box's own codes (contract §3)
  ['CANCELLED', 'Sale cancelled: nothing charged'],
  ['NO_SCAN', 'No payment code scanned in time: nothing charged'],
  ['NOT_WECHAT_CODE', 'Not a WeChat Pay code: ask the customer to show the WeChat payment code'],
  ['TIMEOUT_REVERSED', 'Password not entered in time: order reversed, nothing charged'],
  ['REVERSED', 'Payment not confirmed: order reversed, nothing charged'],
  ['INTERRUPTED', 'Box restarted during the payment: order reversed, nothing charged'],
  ['REVERSE_PENDING', 'Payment not confirmed: reversal pending, any charge will be returned'],
  ['OFFLINE', 'WeChat Pay cannot be reached: take another payment method'],
  ['CERT_REJECTED', 'Merchant certificate refused by WeChat Pay: call the technician'],
]);

/**
 * The TEXT after `FAILED REF OFFLINE` when the merchant's backend (contract §8) refused the sale before sending
 * anything to WeChat Pay because it cannot record sales now (BACKEND_UNAVAILABLE: its database takes no writes).
 */
export const BACKEND_OFFLINE_TEXT = "Merchant's backend cannot take sales now: nothing charged, take another payment method";

/** Keeps an unknown code printable on a one-line ASCII display. */
function printableCode(code: string): string {
  const cleaned = code.replace(/[^A-Za-z0-9_-]/g, '').slice(0, 40);
  return cleaned === '' ? 'no code' : cleaned;
}

/** Short English text a cashier can read and act on. */
export function cashierText(code: string): string {
  const known = TEXTS.get(code);
  if (known !== undefined) return known;
  if (micropayAction(code) === 'config') return CONFIG_TEXT(code);
  return `Payment not completed (${printableCode(code)}): call the technician if it repeats`;
}

/** Every code with its own text (tests check each against the display rules). */
export const KNOWN_CODES: readonly string[] = [...new Set([...TEXTS.keys(), ...MICROPAY_CODES])];

/**
 * Refund codes the box decides itself (contract §3), beside WeChat Pay's refund err_codes, which pass through.
 */
export type RefundCode = 'REFUNDS_OFF' | 'NOT_PAID' | 'OVER_AMOUNT' | 'REFUND_LIMIT' | 'REFUND_PENDING' | 'OFFLINE';

/** What the cashier reads after `FAILED RID CODE`: for a refund, NOTENOUGH is the merchant's balance, not the payer's. */
const REFUND_TEXTS: ReadonlyMap<string, string> = new Map<string, string>([
  ['REFUNDS_OFF', 'Refunds from the register are off: the manager refunds with scanbox refund'],
  ['NOT_PAID', 'No paid sale with that REF on this box: nothing refunded'],
  ['OVER_AMOUNT', 'More than is left to refund of that sale: nothing refunded'],
  ['REFUND_LIMIT', "Today's register refunds would pass the daily limit: the manager refunds it"],
  ['REFUND_PENDING', 'Refund not confirmed yet: the box keeps trying, ask again with QUERY REFUND'],
  ['OFFLINE', 'WeChat Pay cannot be reached: try the refund again later'],
  ['NOTENOUGH', 'Merchant balance too low for the refund: top up the merchant account, then try again'],
  ['TRADE_OVERDUE', 'Sale older than a year: WeChat Pay no longer refunds it, refund another way'],
  ['USER_ACCOUNT_ABNORMAL', "The payer's account is restricted: refund another way"],
  ['REFUNDCLOSE', 'Refund closed by WeChat Pay, nothing refunded: refund it in the merchant platform'],
  ['CHANGE', "Refund could not reach the payer's card: handle it in the merchant platform"],
  ['ORDERNOTEXIST', 'WeChat Pay has no such order: nothing refunded'],
]);

export function refundText(code: string): string {
  const known = REFUND_TEXTS.get(code);
  if (known !== undefined) return known;
  if (micropayAction(code) === 'config') return CONFIG_TEXT(code);
  return `Refund refused by WeChat Pay (${printableCode(code)}): nothing refunded, call the technician if it repeats`;
}

/** Every refund code with its own text. */
export const KNOWN_REFUND_CODES: readonly string[] = [...REFUND_TEXTS.keys()];
