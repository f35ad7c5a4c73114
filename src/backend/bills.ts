import { messageOf } from '../errors.js';
import type { Logger } from '../log.js';
import { formatYuan } from '../money.js';
import { BillError, parseBill, type BillRow } from '../wechatpay/bill.js';
import type { BillOutcome, BillType, WechatPayClient } from '../wechatpay/client.js';

/**
 * A box's bill is its own (contract §8, "A box sees and moves only its own money").
 *
 * The backend fetches the merchant's bill of a day ONCE for every box that asks (BillCache) and hands each box
 * the bill cut to its own trades (cutBill): the header as WeChat Pay wrote it, the box's rows as they were, and
 * a summary recomputed for those rows, so the box's `scanbox reconcile` reads it as it reads WeChat Pay's.
 */

export type Keep = (row: BillRow) => boolean;

/** The summary columns this writer can recompute, by every name the bill parser knows for each. */
const SUMMARY_SUMS: ReadonlyArray<[readonly string[], (row: BillRow) => number, 'yuan' | 'fee']> = [
  [['应结订单总金额', '总交易额'], (r) => r.settlementFen, 'yuan'],
  [['退款总金额', '总退款金额'], (r) => r.refundFen ?? 0, 'yuan'],
  [['充值券退款总金额', '总代金券或立减优惠退款金额', '总企业红包退款金额'], (r) => r.couponRefundFen ?? 0, 'yuan'],
  [['手续费总金额'], (r) => r.feeFen ?? 0, 'fee'],
  [['订单总金额'], (r) => r.orderFen, 'yuan'],
  [['申请退款总金额'], (r) => r.requestedRefundFen ?? 0, 'yuan'],
];

function unticked(name: string): string {
  const trimmed = name.trim();
  return trimmed.charCodeAt(0) === 96 ? trimmed.slice(1) : trimmed;
}

/**
 * The bill `text` with only the trade rows `keep` accepts: the header line and those rows as written, the
 * summary header as written and its row recomputed over the kept rows (a column it cannot recompute is left
 * empty). Null when no row is kept: to the box, No Bill Exist. Throws BillError for text that is not a bill.
 */
export function cutBill(text: string, keep: Keep): string | null {
  const kept: BillRow[] = [];
  const keptLines = new Set<number>();
  parseBill(text, (row) => {
    if (keep(row)) {
      kept.push(row);
      keptLines.add(row.line);
    }
  });
  if (kept.length === 0) return null;
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const lines = body.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  const out: string[] = [];
  let header: string | null = null;
  let summaryHeader: string | null = null;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '') continue;
    if (header === null) {
      header = line;
      out.push(line);
    } else if (keptLines.has(i + 1)) {
      out.push(line);
    } else if (unticked(line.split(',')[0] ?? '') === '总交易单数') {
      summaryHeader = line;
      break;
    }
  }
  if (summaryHeader !== null) {
    out.push(summaryHeader);
    const values = summaryHeader.split(',').map((name) => {
      const n = unticked(name);
      if (n === '总交易单数') return String(kept.length);
      const sum = SUMMARY_SUMS.find(([names]) => names.includes(n));
      if (sum === undefined) return '';
      const fen = kept.reduce((total, row) => total + sum[1](row), 0);
      return sum[2] === 'fee' ? `${formatYuan(fen)}000` : formatYuan(fen);
    });
    out.push(values.map((v) => '`' + v).join(','));
  }
  return (text.charCodeAt(0) === 0xfeff ? '\ufeff' : '') + out.join('\r\n') + '\r\n';
}

/** A box's trades: its orders and their refunds, by the out_trade_no that begins with its device id. */
export function boxTrades(deviceId: string): Keep {
  return (row) => row.outTradeNo.startsWith(deviceId);
}

export interface BillCacheOptions {
  client: Pick<WechatPayClient, 'downloadbill'>;
  log: Logger;
  now: () => number;
  /** How long a fetched bill serves every box; default 6 h (the boxes reconcile the morning after). */
  keepMs?: number;
  /** How long an answer without a bill (not ready, no bill, a failure) stands; default 60 s. */
  retryMs?: number;
  /** Bills kept at once; default 4. */
  maxBills?: number;
}

interface Entry {
  at: number;
  outcome: BillOutcome | null;
  flight: Promise<BillOutcome> | null;
  controller: AbortController | null;
  waiting: number;
}

/**
 * One download of a day's bill for all the boxes: a bill being fetched is waited for (single flight), a
 * fetched one is kept `keepMs`, an answer without a bill `retryMs`, so no box can make the backend fetch a
 * day twice a minute however often it asks; the download is abandoned when every box that waited for it went
 * away. At most `maxBills` days are kept or fetched at once; past that a box is told to try later.
 */
export class BillCache {
  private readonly entries = new Map<string, Entry>();
  private readonly keepMs: number;
  private readonly retryMs: number;
  private readonly maxBills: number;
  /** Downloads made upstream, for tests and the log. */
  fetches = 0;

  constructor(private readonly o: BillCacheOptions) {
    this.keepMs = o.keepMs ?? 6 * 3_600_000;
    this.retryMs = o.retryMs ?? 60_000;
    this.maxBills = o.maxBills ?? 4;
  }

  /**
   * The bill of `billDate` cut to `keep`'s rows. `signal`: the asking box went away (its wait no longer counts).
   */
  async bill(req: { billDate: string; billType?: BillType }, keep: Keep, signal?: AbortSignal): Promise<BillOutcome> {
    const started = this.o.now();
    const whole = await this.whole(req.billDate, req.billType ?? 'ALL', signal);
    if (whole.kind !== 'bill') return whole;
    try {
      const text = cutBill(whole.text, keep);
      if (text === null) return { kind: 'no_bill', call: 'downloadbill', message: 'No Bill Exist (no trade of this box that day)', ms: this.o.now() - started, origin: whole.origin };
      return { ...whole, text, bytes: Buffer.byteLength(text, 'utf8'), gzip: false };
    } catch (error) {
      const message = error instanceof BillError ? `the bill cannot be read: ${error.message}` : messageOf(error);
      return { kind: 'unknown', call: 'downloadbill', failure: 'BAD_BILL', message, ms: this.o.now() - started, origin: whole.origin };
    }
  }

  private whole(billDate: string, billType: BillType, signal?: AbortSignal): Promise<BillOutcome> {
    const key = `${billDate}:${billType}`;
    const now = this.o.now();
    this.expire(now);
    let entry = this.entries.get(key);
    if (entry?.outcome) return Promise.resolve(entry.outcome);
    if (entry === undefined) {
      if (this.entries.size >= this.maxBills) {
        return Promise.resolve({
          kind: 'unknown',
          call: 'downloadbill',
          failure: 'HTTP_STATUS',
          message: 'the backend is fetching other days\' bills: try again in a minute',
          ms: 0,
          origin: null,
        });
      }
      const controller = new AbortController();
      const created: Entry = { at: now, outcome: null, flight: null, controller, waiting: 0 };
      entry = created;
      this.fetches += 1;
      created.flight = this.o.client
        .downloadbill({ billDate, billType, gzip: true, signal: controller.signal })
        .then((outcome) => {
          created.at = this.o.now();
          created.flight = null;
          created.controller = null;
          if (controller.signal.aborted) this.entries.delete(key);
          else created.outcome = outcome;
          if (outcome.kind !== 'bill') this.o.log.info('backend: bill of the day not fetched', { date: billDate, outcome: outcome.kind });
          return outcome;
        });
      this.entries.set(key, created);
    }
    const e = entry;
    e.waiting += 1;
    return new Promise<BillOutcome>((resolve) => {
      let done = false;
      const leave = (): void => {
        if (done) return;
        done = true;
        e.waiting -= 1;
        // Nobody waits any more: the download is abandoned, and the next box starts a new one.
        if (e.waiting === 0 && e.controller !== null) {
          e.controller.abort();
          this.o.log.info('backend: bill download abandoned, nobody waits for it', { date: billDate });
        }
        resolve({ kind: 'unknown', call: 'downloadbill', failure: 'TIMEOUT', message: 'the box went away', ms: 0, origin: null });
      };
      if (signal?.aborted) return leave();
      signal?.addEventListener('abort', leave, { once: true });
      void e.flight!.then((outcome) => {
        signal?.removeEventListener('abort', leave);
        if (done) return;
        done = true;
        e.waiting -= 1;
        resolve(outcome);
      });
    });
  }

  private expire(now: number): void {
    for (const [key, entry] of this.entries) {
      if (entry.outcome === null) continue;
      const ttl = entry.outcome.kind === 'bill' ? this.keepMs : this.retryMs;
      if (now - entry.at >= ttl) this.entries.delete(key);
    }
  }
}
