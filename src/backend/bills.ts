import { messageOf } from '../errors.js';
import type { Logger } from '../log.js';
import { BillError, cutBill, type BillRow } from '../wechatpay/bill.js';
import type { BillOutcome, BillType, WechatPayClient } from '../wechatpay/client.js';

/**
 * A box's bill is its own (contract §8, "A box sees and moves only its own money").
 *
 * The backend fetches the merchant's bill of a day ONCE for every box that asks (BillCache) and hands each box
 * the bill cut to its own trades (cutBillFor, on the bill parser's cutBill): the header as WeChat Pay wrote it, the box's rows as they were, and
 * a summary recomputed for those rows, so the box's `scanbox reconcile` reads it as it reads WeChat Pay's.
 */

export type Keep = (row: BillRow) => boolean;

/**
 * The bill `text` with only the trade rows `keep` accepts (the bill parser's cutBill: the layout whole, the kept
 * rows verbatim, the summary recomputed for them); null when no row is kept: to the box, No Bill Exist. Throws
 * BillError for text that is not a whole bill.
 */
export function cutBillFor(text: string, keep: Keep): string | null {
  let kept = 0;
  const cut = cutBill(text, (row) => {
    const mine = keep(row);
    if (mine) kept++;
    return mine;
  });
  return kept === 0 ? null : cut;
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
  /** Bills kept at once (the least recently asked for goes first); default 8. */
  maxBills?: number;
  /** Downloads under way at once; default 4. */
  maxFlights?: number;
  /** Downloads one box may start (days not kept) in a minute; default 4. Asking for a kept day is free. */
  perBoxPerMinute?: number;
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
 * away. At most `maxFlights` downloads are under way and `maxBills` days kept (the least recently asked for
 * goes first), and one box may start at most `perBoxPerMinute` downloads a minute: past that it is told to try
 * again later (its reconcile exits 3 and is run again), so no box can turn its calls into the merchant's bills.
 */
export class BillCache {
  private readonly entries = new Map<string, Entry>();
  private readonly keepMs: number;
  private readonly retryMs: number;
  private readonly maxBills: number;
  private readonly maxFlights: number;
  private readonly perBox: number;
  /** When each box started its recent downloads. */
  private readonly started = new Map<string, number[]>();
  /** Downloads made upstream, for tests and the log. */
  fetches = 0;

  constructor(private readonly o: BillCacheOptions) {
    this.keepMs = o.keepMs ?? 6 * 3_600_000;
    this.retryMs = o.retryMs ?? 60_000;
    this.maxBills = o.maxBills ?? 8;
    this.maxFlights = o.maxFlights ?? 4;
    this.perBox = o.perBoxPerMinute ?? 4;
  }

  /**
   * The bill of `billDate` cut to `keep`'s rows. `signal`: the asking box went away (its wait no longer counts).
   */
  async bill(req: { billDate: string; billType?: BillType }, keep: Keep, signal?: AbortSignal, box = '-'): Promise<BillOutcome> {
    const started = this.o.now();
    const whole = await this.whole(req.billDate, req.billType ?? 'ALL', signal, box);
    if (whole.kind !== 'bill') return whole;
    try {
      const text = cutBillFor(whole.text, keep);
      if (text === null) return { kind: 'no_bill', call: 'downloadbill', message: 'No Bill Exist (no trade of this box that day)', ms: this.o.now() - started, origin: whole.origin };
      return { ...whole, text, bytes: Buffer.byteLength(text, 'utf8'), gzip: false };
    } catch (error) {
      const message = error instanceof BillError ? `the bill cannot be read: ${error.message}` : messageOf(error);
      return { kind: 'unknown', call: 'downloadbill', failure: 'BAD_BILL', message, ms: this.o.now() - started, origin: whole.origin };
    }
  }

  private whole(billDate: string, billType: BillType, signal?: AbortSignal, box = '-'): Promise<BillOutcome> {
    const key = `${billDate}:${billType}`;
    const now = this.o.now();
    this.expire(now);
    let entry = this.entries.get(key);
    if (entry?.outcome) {
      // Most recently asked for: kept the longest when the cache is full.
      this.entries.delete(key);
      this.entries.set(key, entry);
      return Promise.resolve(entry.outcome);
    }
    if (entry === undefined) {
      const later = (why: string): Promise<BillOutcome> =>
        Promise.resolve({ kind: 'unknown', call: 'downloadbill', failure: 'HTTP_STATUS', message: `${why}: try again in a minute`, ms: 0, origin: null });
      const flights = [...this.entries.values()].filter((e) => e.outcome === null).length;
      if (flights >= this.maxFlights) return later("the backend is fetching other days' bills");
      const recent = (this.started.get(box) ?? []).filter((at) => now - at < 60_000);
      if (recent.length >= this.perBox) return later(`this box asked for ${recent.length} bills not kept in the last minute`);
      recent.push(now);
      this.started.set(box, recent);
      // Room for the new one: the least recently asked for kept bill goes.
      for (const [k, e] of this.entries) {
        if (this.entries.size < this.maxBills) break;
        if (e.outcome !== null) this.entries.delete(k);
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
    for (const [box, times] of this.started) if (times.every((at) => now - at >= 60_000)) this.started.delete(box);
    for (const [key, entry] of this.entries) {
      if (entry.outcome === null) continue;
      const ttl = entry.outcome.kind === 'bill' ? this.keepMs : this.retryMs;
      if (now - entry.at >= ttl) this.entries.delete(key);
    }
  }
}
