/**
 * The states of a sale are the journal's states; the payment cycle is a state machine over them. This
 * table is the whole of it: the journal refuses any transition not listed here, so a bug elsewhere cannot
 * move money state sideways.
 *
 *   open ──scan──> paying ──SUCCESS──> paid
 *    │               │ ──final err_code──> failed
 *    │               │ ──unknown / USERPAYING──> polling ──SUCCESS──> paid
 *    │               │                              │ ──CLOSED/REVOKED──> failed
 *    │               └──────────────┬───────────────┘
 *    │                              v
 *    │                          reversing ──confirmed──> reversed
 *    │                              └──REVERSE_EXPIRE etc──> reverse_failed
 *    └──cancel / no scan / foreign code / offline / restart──> failed   (nothing was sent)
 *
 *   paid ──technician's `scanbox reverse`──> reversing   (the payer is refunded)
 */

export type SaleState =
  | 'open'
  | 'paying'
  | 'polling'
  | 'reversing'
  | 'paid'
  | 'failed'
  | 'reversed'
  | 'reverse_failed';

export const SALE_STATES: readonly SaleState[] = [
  'open',
  'paying',
  'polling',
  'reversing',
  'paid',
  'failed',
  'reversed',
  'reverse_failed',
];

export const TRANSITIONS: Readonly<Record<SaleState, readonly SaleState[]>> = {
  open: ['paying', 'failed'],
  paying: ['paid', 'failed', 'polling', 'reversing'],
  polling: ['paid', 'failed', 'reversing'],
  reversing: ['reversed', 'reverse_failed'],
  // Only a technician's `scanbox reverse` leaves paid: reversing a paid order refunds the payer.
  paid: ['reversing'],
  failed: [],
  reversed: [],
  // A reversal WeChat Pay refused for good (e.g. past 7 days) stays visible for a technician; a manual
  // `scanbox reverse` may try it again.
  reverse_failed: ['reversing'],
};

/** Final for the register: the sale has its one answer. */
export function isFinal(state: SaleState): boolean {
  return state === 'paid' || state === 'failed' || state === 'reversed' || state === 'reverse_failed';
}

export function canTransition(from: SaleState, to: SaleState): boolean {
  return TRANSITIONS[from].includes(to);
}

/**
 * The states of a refund, its own state machine (contract §6.6):
 *
 *   requested ──request sent──> submitted ──SUCCESS (accepted)──> accepted ──refundquery──> succeeded
 *       │                          │  └──unknown: refundquery, then sent again                 │──> closed  (REFUNDCLOSE)
 *       │                          │     with the SAME out_refund_no──┘                        └──> change  (CHANGE)
 *       │                          └──refundquery shows it already settled──> succeeded | closed | change
 *       └──────────────────────────┴──final err_code (NOTENOUGH, TRADE_OVERDUE ...)──> failed
 *
 * A refund is committed (requested, with its out_refund_no) before its first request leaves the box; every
 * retry reuses that number, so one RID refunds at most once.
 */
export type RefundState = 'requested' | 'submitted' | 'accepted' | 'succeeded' | 'closed' | 'change' | 'failed';

export const REFUND_STATES: readonly RefundState[] = ['requested', 'submitted', 'accepted', 'succeeded', 'closed', 'change', 'failed'];

export const REFUND_TRANSITIONS: Readonly<Record<RefundState, readonly RefundState[]>> = {
  requested: ['submitted', 'failed'],
  submitted: ['accepted', 'succeeded', 'closed', 'change', 'failed'],
  accepted: ['succeeded', 'closed', 'change'],
  succeeded: [],
  closed: [],
  change: [],
  failed: [],
};

export function canRefundTransition(from: RefundState, to: RefundState): boolean {
  return REFUND_TRANSITIONS[from].includes(to);
}

/** WeChat Pay has accepted it: the register was (or is) told REFUNDED. */
export function refundAccepted(state: RefundState): boolean {
  return state === 'accepted' || state === 'succeeded' || state === 'closed' || state === 'change';
}

/**
 * Counts against the sale's refundable balance and the register's day: everything but a refund that
 * refunded nothing (failed, or closed by WeChat Pay).
 */
export function refundHoldsMoney(state: RefundState): boolean {
  return state !== 'failed' && state !== 'closed';
}
