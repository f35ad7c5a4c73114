/**
 * The identifiers the box accepts, stores and sends, each rule written once (contract §2-3, wechatpay-v2.md §2).
 */

/** SCANBOX_DEVICE_ID: 1-16 of [A-Za-z0-9]; sent as device_info and the prefix of every out_trade_no. */
export const DEVICE_ID = /^[A-Za-z0-9]{1,16}$/;
export const DEVICE_ID_RULE = '1-16 of [A-Za-z0-9]';

/** The register's sale reference (and refund reference): the idempotency key, 1-32 of [A-Za-z0-9_-]. */
export const REF = /^[A-Za-z0-9_-]{1,32}$/;
export const REF_RULE = 'REF must be 1-32 of A-Z a-z 0-9 _ -';
/** The refund reference (RID) follows REF; its rule is worded for the word the register got wrong. */
export const RID_RULE = 'RID must be 1-32 of A-Z a-z 0-9 _ -';

/**
 * out_trade_no: WeChat Pay allows `|*@` too, but only the safe set `[A-Za-z0-9_-]` is accepted by every API
 * version; the box makes its own from the device id, the journal tag and a sequence number, so nothing it
 * ever sent falls outside it.
 */
export const OUT_TRADE_NO = /^[A-Za-z0-9_-]{1,32}$/;
export const OUT_TRADE_NO_RULE = '1-32 of [A-Za-z0-9_-]';

/** out_refund_no: WeChat Pay allows 64 characters; the box makes its own in the same safe set. */
export const OUT_REFUND_NO = /^[A-Za-z0-9_-]{1,64}$/;
export const OUT_REFUND_NO_RULE = '1-64 of [A-Za-z0-9_-]';
