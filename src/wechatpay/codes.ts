/**
 * What a WeChat Pay V2 answer means for the money (wechatpay-v2.md §3 and §5). What the cashier is told
 * about each code is the box's own business: src/codes.ts.
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

/** Every micropay err_code the table above knows. */
export const MICROPAY_CODES: readonly string[] = [...ACTIONS.keys()];

/**
 * What a refund err_code means (after-the-sale.md §1). `unknown`: the refund may have been accepted, so ask
 * refundquery, then send it again with the same out_refund_no; `wait`: WeChat Pay asks to slow down, send it
 * again later with the same number; `final`: nothing was refunded and nothing will be under this number.
 */
export type RefundAction = 'final' | 'unknown' | 'wait';

const REFUND_ACTIONS: ReadonlyMap<string, RefundAction> = new Map<string, RefundAction>([
  ['SYSTEMERROR', 'unknown'],
  ['BIZERR_NEED_RETRY', 'unknown'],
  ['INVALID_REQ_TOO_MUCH', 'wait'],
  ['FREQUENCY_LIMITED', 'wait'],
  ...(
    [
      'NOTENOUGH',
      'TRADE_OVERDUE',
      'USER_ACCOUNT_ABNORMAL',
      'ERROR',
      'PARAM_ERROR',
      'INVALID_TRANSACTIONID',
      'ORDERNOTEXIST',
      'SIGNERROR',
      'APPID_NOT_EXIST',
      'MCHID_NOT_EXIST',
      'APPID_MCHID_NOT_MATCH',
      'NOAUTH',
      'LACK_PARAMS',
      'XML_FORMAT_ERROR',
      'NOT_UTF8',
      'REQUIRE_POST_METHOD',
      'POST_DATA_EMPTY',
      'INVALID_REQUEST',
    ] as const
  ).map((code) => [code, 'final'] as const),
]);

/**
 * The action for a refund err_code. A code WeChat Pay adds later is `unknown`: asked about and sent again
 * with the same refund number, which can never refund twice.
 */
export function refundAction(errCode: string): RefundAction {
  return REFUND_ACTIONS.get(errCode) ?? 'unknown';
}

/** Every refund err_code the table above knows. */
export const REFUND_CODES: readonly string[] = [...REFUND_ACTIONS.keys()];

/** refundquery's refund_status_$n (after-the-sale.md §2). Anything else is still `processing`. */
export type RefundStatus = 'succeeded' | 'processing' | 'closed' | 'change';

export function refundStatusClass(status: string): RefundStatus {
  if (status === 'SUCCESS') return 'succeeded';
  if (status === 'REFUNDCLOSE') return 'closed';
  if (status === 'CHANGE') return 'change';
  return 'processing';
}
