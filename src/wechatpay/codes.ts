/**
 * What a WeChat Pay V2 answer means for the money (wechatpay-v2.md §3 and §5), and what the cashier is told.
 *
 * The safe direction is always "unknown": an unknown micropay result is queried and, if still unclear,
 * reversed, so nobody is charged for goods they did not get. A code is only `final` when WeChat Pay's
 * documentation says the payment definitely did not happen.
 */

/** final = definite failure, nothing charged; unknown = resolve by orderquery; config = integration error, not charged, never auto-retried. */
export type MicropayAction = 'final' | 'unknown' | 'config';

const MICROPAY_UNKNOWN = ['SYSTEMERROR', 'BANKERROR', 'USERPAYING', 'ORDERPAID'] as const;

const MICROPAY_FINAL = [
  'AUTHCODEEXPIRE',
  'AUTH_CODE_ERROR',
  'AUTH_CODE_INVALID',
  'NOTENOUGH',
  'NOTSUPORTCARD',
  'BUYER_MISMATCH',
  'TRADE_ERROR',
  'ORDERCLOSED',
  'ORDERREVERSED',
] as const;

const MICROPAY_CONFIG = [
  'PARAM_ERROR',
  'SIGNERROR',
  'LACK_PARAMS',
  'XML_FORMAT_ERROR',
  'NOT_UTF8',
  'REQUIRE_POST_METHOD',
  'APPID_NOT_EXIST',
  'MCHID_NOT_EXIST',
  'APPID_MCHID_NOT_MATCH',
  'NOAUTH',
  'OUT_TRADE_NO_USED',
  'INVALID_REQUEST',
] as const;

const ACTIONS: ReadonlyMap<string, MicropayAction> = new Map<string, MicropayAction>([
  ...MICROPAY_UNKNOWN.map((code) => [code, 'unknown'] as const),
  ...MICROPAY_FINAL.map((code) => [code, 'final'] as const),
  ...MICROPAY_CONFIG.map((code) => [code, 'config'] as const),
]);

/**
 * The action for a micropay err_code. A code WeChat Pay adds later is `unknown`: it gets queried and,
 * if not paid, reversed, which costs a sale at worst and never a double charge or a lost payment.
 */
export function micropayAction(errCode: string): MicropayAction {
  return ACTIONS.get(errCode) ?? 'unknown';
}

export type TradeStateClass = 'paid' | 'pending' | 'closed' | 'reverse';

const TRADE_STATES: ReadonlyMap<string, TradeStateClass> = new Map<string, TradeStateClass>([
  ['SUCCESS', 'paid'],
  // REFUND: the payment went through and a refund was started afterwards; the sale itself was paid.
  ['REFUND', 'paid'],
  ['NOTPAY', 'pending'],
  ['USERPAYING', 'pending'],
  ['ACCEPT', 'pending'],
  ['CLOSED', 'closed'],
  ['REVOKED', 'closed'],
  // PAYERROR: "支付失败，请撤销订单": the order must still be reversed to be sure it is closed.
  ['PAYERROR', 'reverse'],
]);

/** orderquery's trade_state. An unknown value is `pending`: the sale keeps polling and is reversed at the deadline. */
export function tradeStateClass(tradeState: string): TradeStateClass {
  return TRADE_STATES.get(tradeState) ?? 'pending';
}

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

/** Keeps an unknown code printable on a one-line ASCII display. */
function printableCode(code: string): string {
  const cleaned = code.replace(/[^A-Za-z0-9_-]/g, '').slice(0, 40);
  return cleaned === '' ? 'no code' : cleaned;
}

/** Short English text a cashier can read and act on. */
export function cashierText(code: string): string {
  const known = TEXTS.get(code);
  if (known !== undefined) return known;
  if (ACTIONS.get(code) === 'config') return CONFIG_TEXT(code);
  return `Payment not completed (${printableCode(code)}): call the technician if it repeats`;
}

/** Every code with its own text (tests check each against the display rules). */
export const KNOWN_CODES: readonly string[] = [...new Set([...TEXTS.keys(), ...ACTIONS.keys()])];
