import { AMOUNT_TOKENS, readAmount, type TwoReading } from './reading.js';

/**
 * What the box says (contract §9), as the clips of a voice pack: a fixed phrase, then an amount where there is
 * one. Every part of the box asks for an announcement by its kind; only this file knows the words.
 */

/** The fixed phrases of contract §9, and the few the box adds (reasons, the selftest, the amount to pay). */
export const PHRASES = {
  paid: '微信收款',
  password: '请输入支付密码',
  failed: '支付失败',
  notEnough: '余额不足',
  codeExpired: '付款码已过期',
  codeInvalid: '付款码无效',
  notWechat: '请出示微信付款码',
  noScan: '支付超时',
  givenBack: '支付已撤销',
  refunded: '退款成功',
  offline: '网络异常，请使用其他方式付款',
  due: '请付款',
  test: '语音测试',
} as const;

export type PhraseName = keyof typeof PHRASES;
export type Phrase = (typeof PHRASES)[PhraseName];

/** Every token a voice pack must have a clip for: each amount clip and each phrase. */
export const PACK_TOKENS: readonly string[] = [...AMOUNT_TOKENS, ...Object.values(PHRASES)];

/** Why a payment failed, on the payer's side, said after 支付失败. */
export type FailReason = 'notEnough' | 'codeExpired' | 'codeInvalid' | 'notWechat' | 'noScan';

/**
 * The seam every part of the box speaks through: what happened, never the words. `due` is the amount the
 * payer is asked for (a customer display's armed total).
 */
export type Announcement =
  | { kind: 'paid'; fen: number }
  | { kind: 'password' }
  | { kind: 'failed'; reason?: FailReason }
  | { kind: 'given_back' }
  | { kind: 'refunded'; fen: number }
  | { kind: 'offline' }
  | { kind: 'due'; fen: number }
  | { kind: 'test' };

/** The clips of an announcement, in order. Throws RangeError for an amount that cannot be read. */
export function tokensOf(announcement: Announcement, two: TwoReading = 'liang'): string[] {
  switch (announcement.kind) {
    case 'paid':
      return [PHRASES.paid, ...readAmount(announcement.fen, two)];
    case 'password':
      return [PHRASES.password];
    case 'failed':
      return announcement.reason === 'noScan' ? [PHRASES.noScan] : [PHRASES.failed, ...(announcement.reason ? [PHRASES[announcement.reason]] : [])];
    case 'given_back':
      return [PHRASES.givenBack];
    case 'refunded':
      return [PHRASES.refunded, ...readAmount(announcement.fen, two)];
    case 'offline':
      return [PHRASES.offline];
    case 'due':
      return [PHRASES.due, ...readAmount(announcement.fen, two)];
    case 'test':
      return [PHRASES.test];
  }
}

const REASONS: ReadonlyMap<string, FailReason> = new Map<string, FailReason>([
  ['NOTENOUGH', 'notEnough'],
  ['AUTHCODEEXPIRE', 'codeExpired'],
  ['AUTH_CODE_ERROR', 'codeInvalid'],
  ['AUTH_CODE_INVALID', 'codeInvalid'],
  ['NOT_WECHAT_CODE', 'notWechat'],
  ['NO_SCAN', 'noScan'],
]);

/** Given back to the payer (contract §9: 支付已撤销). */
const GIVEN_BACK = new Set(['TIMEOUT_REVERSED', 'INTERRUPTED', 'REVERSED']);

/**
 * What the box says when a sale ends (contract §9), or null for silence. `scanned`: a payment code had been
 * read (a CANCEL before the scan is the cashier's own act: nothing happened that the payer must hear).
 */
export function saleAnnouncement(result: { kind: 'paid'; fen: number } | { kind: 'failed'; code: string; scanned: boolean } | { kind: 'pending' }): Announcement | null {
  if (result.kind === 'paid') return { kind: 'paid', fen: result.fen };
  if (result.kind === 'pending') return null;
  const code = result.code;
  if (code === 'OFFLINE') return { kind: 'offline' };
  if (GIVEN_BACK.has(code)) return { kind: 'given_back' };
  if (code === 'CANCELLED') return result.scanned ? { kind: 'given_back' } : null;
  const reason = REASONS.get(code);
  return reason ? { kind: 'failed', reason } : { kind: 'failed' };
}
