import type { TradeReportLevel } from '../config.js';
import type { Sale } from '../journal/journal.js';
import type { Logger } from '../log.js';
import type { TradeReport, WechatPayClient } from '../wechatpay/client.js';

/**
 * WeChat Pay's trade report (交易保障, after-the-sale.md §4) for the payment-code cycle: one report per payment
 * (`/pay/micropay/total`), of the payments that did not go through at once (`errors`, the official SDK's
 * default), of all, or none. It is sent after the register has its answer, on a connection of its own, with a
 * 1 s timeout, never retried: it can never delay a sale or a shutdown, and a lost report costs nothing.
 */

export const MICROPAY_TOTAL_URL = 'https://api.mch.weixin.qq.com/pay/micropay/total';

export type TradeReportSender = Pick<WechatPayClient, 'tradeReport'>;

/** yyyyMMddHHmmss in China time (UTC+8 all year), as WeChat Pay writes times. */
export function chinaTime(ms: number): string {
  const d = new Date(ms + 8 * 3_600_000);
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}${two(d.getUTCHours())}${two(d.getUTCMinutes())}${two(d.getUTCSeconds())}`;
}

/** What the report says of a finished sale, or null when none is due (nothing was sent, or the level says no). */
export function reportOf(sale: Sale, level: TradeReportLevel, deviceId: string): TradeReport | null {
  if (level === 'off' || sale.submittedAt === null) return null;
  const paid = sale.state === 'paid';
  // `errors`: a payment that was paid without a detour is not an error; one that needed queries still is not.
  if (level === 'errors' && paid) return null;
  return {
    interfaceUrl: MICROPAY_TOTAL_URL,
    executeMs: Math.max(0, sale.updatedAt - sale.submittedAt),
    returnCode: 'SUCCESS',
    returnMsg: paid ? 'OK' : (sale.finalCode ?? sale.state),
    resultCode: paid ? 'SUCCESS' : 'FAIL',
    ...(paid ? {} : { errCode: sale.finalCode ?? sale.state.toUpperCase(), errCodeDes: (sale.finalText ?? '').slice(0, 120) }),
    deviceInfo: deviceId,
    outTradeNo: sale.outTradeNo,
    time: chinaTime(sale.submittedAt),
  };
}

export class TradeReporter {
  private readonly pending = new Set<Promise<void>>();

  constructor(
    private readonly sender: TradeReportSender,
    private readonly level: TradeReportLevel,
    private readonly deviceId: string,
    private readonly log: Logger,
  ) {}

  /** Reports a finished sale in the background. Never throws, never waits. */
  sale(sale: Sale): void {
    const report = reportOf(sale, this.level, this.deviceId);
    if (!report) return;
    const sent = this.sender.tradeReport(report).then(
      (result) => this.log.debug('trade report', { out_trade_no: sale.outTradeNo, result: result.ok ? 'taken' : 'not taken', detail: result.message }),
      () => undefined,
    );
    this.pending.add(sent);
    void sent.finally(() => this.pending.delete(sent));
  }

  /** For tests: the reports under way have ended (taken, refused or timed out). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.pending]);
  }
}
