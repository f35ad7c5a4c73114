/**
 * What the barcode scanner read (contract §4). Pure. The box takes WeChat Pay only; a code of another
 * wallet ends the sale locally, without any request, and the cashier is told which wallet it was so the
 * customer can switch app instead of scanning again.
 *
 * The code returned is a one-time payment credential: callers pass it on to the payment engine and
 * never log it (the log masks it anyway).
 */

export type ScanKind = 'wechat' | 'alipay' | 'unionpay' | 'other';

/** WeChat Pay's payment code: 18 digits beginning 10-15. */
const WECHAT = /^1[0-5]\d{16}$/;
/** Alipay's payment code: 16-24 digits beginning 25-30. */
const ALIPAY = /^(2[5-9]|30)\d{14,22}$/;
/** UnionPay QuickPass: 19 digits beginning 62. */
const UNIONPAY = /^62\d{17}$/;

/** Classifies one scanned line; `code` is the line without surrounding white space. */
export function classifyCode(text: string): { kind: ScanKind; code: string } {
  const code = text.trim();
  if (WECHAT.test(code)) return { kind: 'wechat', code };
  if (ALIPAY.test(code)) return { kind: 'alipay', code };
  if (UNIONPAY.test(code)) return { kind: 'unionpay', code };
  return { kind: 'other', code };
}

/** The cashier's text after `FAILED REF NOT_WECHAT_CODE` (ASCII: any register can show it). */
export function describeForeign(kind: ScanKind): string {
  switch (kind) {
    case 'alipay':
      return 'Alipay code: this box takes WeChat Pay only, ask for the WeChat payment code';
    case 'unionpay':
      return 'UnionPay code: this box takes WeChat Pay only, ask for the WeChat payment code';
    case 'wechat':
      return 'WeChat payment code';
    case 'other':
      return 'Not a WeChat payment code: ask the customer to show the WeChat Pay payment code';
  }
}
