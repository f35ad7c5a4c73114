import { chinaTimeMs } from '../business-day.js';
import type { Clock } from '../clock.js';
import type { Journal, Sale, SaleOrigin, SalePatch } from '../journal/journal.js';
import type { SaleState } from '../journal/states.js';
import { isFinal, refundHoldsMoney } from '../journal/states.js';
import { formatYuan } from '../money.js';
import { maskCode, type Logger } from '../log.js';
import type { ApiOutcome, WechatPayClient } from '../wechatpay/client.js';
import { BACKEND_OFFLINE_TEXT, cashierText, type BoxCode } from '../codes.js';
import { micropayAction, tradeStateClass } from '../wechatpay/codes.js';

/**
 * One sale's cycle, micropay -> orderquery -> reverse, as a state machine over the journal's states
 * (src/journal/states.ts). Every transition is committed to the journal before anyone is told: the
 * caller learns the outcome only from a row that is already durable.
 *
 * The engine knows nothing of serial ports or lights; box.ts wires it to the counter.
 */

/** The three calls the engine makes: the real client, or a stand-in that wraps it (tests, the crash harness). */
export type PaymentGateway = Pick<WechatPayClient, 'micropay' | 'orderquery' | 'reverse'> & Partial<Pick<WechatPayClient, 'warm' | 'cool'>>;

export interface EngineOptions {
  journal: Journal;
  gateway: PaymentGateway;
  clock: Clock;
  log: Logger;
  /** Goods description shown to the payer. */
  body: string;
  /** Sent as device_info. */
  deviceId: string;
  /** Query interval while the payer confirms (SCANBOX_USERPAYING_POLL_S). */
  pollMs?: number;
  /** How long the payer may take before the order is reversed (SCANBOX_USERPAYING_TIMEOUT_S). */
  userpayingTimeoutMs?: number;
  /** WeChat Pay asks merchants not to reverse within 15 s of placing the order. */
  minReverseDelayMs?: number;
  /** Reverse attempts while the register waits; after them the sale is reported REVERSE_PENDING. */
  foregroundReverseAttempts?: number;
  /** Back-off between reverse attempts, the last value repeating for ever. */
  reverseBackoffMs?: readonly number[];
  /** Told about every answer (or its absence) from WeChat Pay, so the box can tell ONLINE from OFFLINE. */
  onGatewayOutcome?: (outcome: ApiOutcome) => void;
}

export type SaleProgress = 'scanned' | 'password';

export type StartResult =
  | { kind: 'open'; sale: Sale }
  | { kind: 'paid'; sale: Sale }
  | { kind: 'busy'; sale: Sale }
  /**
   * An earlier attempt of this REF may still hold the payer's money (its reversal is pending, or WeChat Pay
   * refused it for good): no new attempt, so one REF never yields two charges. `verdict` is the register's answer.
   */
  | { kind: 'held'; sale: Sale; verdict: Verdict };

export interface PayOptions {
  /** Aborted when the cashier cancels: anything already sent is reversed. */
  signal?: AbortSignal;
  onProgress?: (progress: SaleProgress, sale: Sale) => void;
}

/** What the register is told about a sale, derived only from its journal row. */
export type Verdict =
  | { kind: 'paid'; ref: string; outTradeNo: string; transactionId: string }
  | { kind: 'failed'; ref: string; code: string; text: string }
  | { kind: 'pending'; ref: string };

export function verdictOf(sale: Sale): Verdict {
  if (sale.state === 'paid') {
    return { kind: 'paid', ref: sale.ref, outTradeNo: sale.outTradeNo, transactionId: sale.transactionId ?? '' };
  }
  if (sale.finalCode !== null) {
    return { kind: 'failed', ref: sale.ref, code: sale.finalCode, text: sale.finalText ?? cashierText(sale.finalCode) };
  }
  return { kind: 'pending', ref: sale.ref };
}

/** What happened to a call the merchant's backend refused (contract §8) without sending it, for the journal and the log. */
function unsentText(refusal: string): string {
  const why = refusal === 'BACKEND_UNAVAILABLE' ? 'answered that it cannot take sales now' : 'refused it';
  return `the merchant's backend ${why} (${refusal}): nothing was sent to WeChat Pay`;
}

const DEFAULT_BACKOFF = [1000, 2000, 5000, 10000, 30000, 60000, 300000, 900000] as const;

function outcomeDetail(outcome: ApiOutcome): string {
  const detail: Record<string, string | number> = { call: outcome.call, result: outcome.kind, ms: outcome.ms };
  if (outcome.origin) detail.origin = outcome.origin;
  if (outcome.kind === 'unknown') {
    detail.failure = outcome.failure;
    detail.message = outcome.message;
    if (outcome.refusal) detail.refusal = outcome.refusal;
    if (outcome.unsent) detail.unsent = outcome.refusal ? unsentText(outcome.refusal) : 'no connection was made: the request never left the box';
  } else if (outcome.kind === 'business') {
    detail.err_code = outcome.errCode;
    if (outcome.errCodeDes) detail.err_code_des = outcome.errCodeDes;
  } else {
    for (const key of ['trade_state', 'transaction_id', 'total_fee', 'recall', 'time_end'] as const) {
      const value = outcome.fields[key];
      if (value !== undefined) detail[key] = value;
    }
  }
  return JSON.stringify(detail);
}

export class PaymentEngine {
  private readonly journal: Journal;
  private readonly gateway: PaymentGateway;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly body: string;
  private readonly deviceId: string;
  private readonly pollMs: number;
  private readonly userpayingTimeoutMs: number;
  private readonly minReverseDelayMs: number;
  private readonly foregroundReverseAttempts: number;
  private readonly backoff: readonly number[];
  private readonly onGatewayOutcome: ((outcome: ApiOutcome) => void) | undefined;
  /** Sales whose reversal is being worked on now, so the queue and a sale never reverse at once. */
  private readonly reversing = new Set<number>();
  private queue: { stop: AbortController; done: Promise<void> } | null = null;

  constructor(options: EngineOptions) {
    this.journal = options.journal;
    this.gateway = options.gateway;
    this.clock = options.clock;
    this.log = options.log;
    this.body = options.body;
    this.deviceId = options.deviceId;
    this.pollMs = options.pollMs ?? 5000;
    this.userpayingTimeoutMs = options.userpayingTimeoutMs ?? 30000;
    this.minReverseDelayMs = options.minReverseDelayMs ?? 15000;
    this.foregroundReverseAttempts = options.foregroundReverseAttempts ?? 3;
    this.backoff = options.reverseBackoffMs ?? DEFAULT_BACKOFF;
    this.onGatewayOutcome = options.onGatewayOutcome;
    if (!(this.pollMs > 0) || !(this.userpayingTimeoutMs > 0)) throw new TypeError('poll interval and timeout must be > 0');
  }

  private saleLog(sale: Sale): Logger {
    return this.log.child({ ref: sale.ref, out_trade_no: sale.outTradeNo, amount: formatYuan(sale.amountFen) });
  }

  /**
   * The register's PAY, with its REF as the idempotency key: a REF that was paid gets its PAID sale back
   * and nothing is charged again (also after a restart); a REF whose last attempt failed gets a new
   * attempt with a new out_trade_no, unless an earlier attempt may still hold the payer's money (contract
   * §6.4 before §3: the new attempt could be a second charge for the REF); while any sale is unfinished no
   * other is opened.
   */
  startSale(ref: string, amountFen: number, origin?: SaleOrigin): StartResult {
    const attempts = this.journal.byRef(ref);
    const previous = attempts.at(-1);
    if (previous?.state === 'paid') {
      if (previous.amountFen !== amountFen) {
        this.saleLog(previous).warning('PAY repeated for a paid REF with another amount; answering the paid sale', {
          asked: formatYuan(amountFen),
        });
      }
      return { kind: 'paid', sale: previous };
    }
    const open = this.journal.unfinished().find((sale) => sale.state !== 'reversing' || sale.finalCode === null);
    if (open) return { kind: 'busy', sale: open };
    const held = attempts.find((sale) => sale.state === 'reversing' || sale.state === 'reverse_failed');
    if (held) {
      const text =
        held.state === 'reverse_failed'
          ? 'An earlier payment of this sale could not be given back: refund it in the merchant platform, then ring the sale up again under a new number'
          : 'An earlier payment of this sale is still being given back: wait, or ring the sale up again under a new number';
      this.saleLog(held).warning('PAY refused: an earlier attempt of this REF may still hold the payer\'s money', { state: held.state });
      return { kind: 'held', sale: held, verdict: { kind: 'failed', ref, code: 'REVERSE_PENDING', text } };
    }
    return { kind: 'open', sale: this.open(ref, amountFen, origin) };
  }

  /**
   * A sale is open and its code is coming: have a connection to WeChat Pay ready, so that neither its micropay
   * nor the queries of a password wait pay a handshake while the customer waits. `coolDown` when it is over.
   */
  warmUp(): void {
    this.gateway.warm?.();
  }

  coolDown(): void {
    this.gateway.cool?.();
  }

  /**
   * Commits a new sale (state open) before anything else happens to it. `origin` is journalled with it and
   * means nothing to the cycle: every sale follows the same rules whoever gave its amount.
   */
  open(ref: string, amountFen: number, origin?: SaleOrigin): Sale {
    const sale = this.journal.createSale(ref, amountFen, origin);
    this.saleLog(sale).info('sale opened');
    return sale;
  }

  /** Ends an open sale locally, nothing having been sent: CANCELLED, NO_SCAN, NOT_WECHAT_CODE, OFFLINE. */
  failOpen(saleId: number, code: BoxCode, text: string = cashierText(code)): Sale {
    const sale = this.journal.transition(saleId, 'failed', { finalCode: code, finalText: text }, {
      kind: 'ended',
      detail: JSON.stringify({ code, sent: false }),
    });
    this.saleLog(sale).info('sale ended before any request', { result: code });
    return sale;
  }

  /**
   * Runs the payment cycle for an open sale with the scanned payment code and returns the sale once the
   * register can be told its answer: paid, failed, reversed, or REVERSE_PENDING (the reversal then goes
   * on in the background queue). The full code lives only in this call's memory.
   */
  async pay(saleId: number, paymentCode: string, options: PayOptions = {}): Promise<Sale> {
    const { signal, onProgress } = options;
    let sale = this.current(saleId);
    if (sale.state !== 'open') throw new Error(`sale ${sale.outTradeNo} is ${sale.state}, not open`);
    const log = this.saleLog(sale);
    const submittedAt = this.clock.now();
    sale = this.journal.transition(saleId, 'paying', { codeMasked: maskCode(paymentCode), submittedAt }, {
      kind: 'micropay_sent',
      detail: JSON.stringify({ code: maskCode(paymentCode) }),
    });
    log.info('payment code scanned, asking WeChat Pay', { code: paymentCode });
    onProgress?.('scanned', sale);

    // micropay is never aborted or re-sent: a second one could charge twice, and an aborted one may
    // still have charged. Cancel takes effect once it has answered.
    const outcome = await this.gateway.micropay({
      outTradeNo: sale.outTradeNo,
      totalFee: sale.amountFen,
      authCode: paymentCode,
      body: this.body,
      deviceInfo: this.deviceId,
      attach: sale.ref,
    });
    this.onGatewayOutcome?.(outcome);
    log.info('micropay answered', { ...this.outcomeFields(outcome) });

    if (outcome.kind === 'unknown' && outcome.unsent === true) {
      // No connection to WeChat Pay was ever made for it (DNS failure, refused, connect timeout), or the merchant's
      // backend refused it before sending anything (`refusal`: it cannot record sales now): no byte of the
      // request can have reached WeChat Pay, so nothing can have been charged. No query, no reversal: the
      // register hears at once instead of after the unknown-result loop. The evidence goes in the journal.
      const code = signal?.aborted ? 'CANCELLED' : 'OFFLINE';
      const text =
        code === 'CANCELLED'
          ? cashierText(code)
          : outcome.refusal === 'BACKEND_UNAVAILABLE'
            ? BACKEND_OFFLINE_TEXT
            : `${cashierText('OFFLINE')} (${outcome.refusal ?? outcome.failure})`;
      const failed = this.journal.transition(saleId, 'failed', { finalCode: code, finalText: text }, {
        kind: 'micropay_answer',
        detail: outcomeDetail(outcome),
      });
      if (outcome.refusal) {
        log.warning(`micropay not made: ${unsentText(outcome.refusal)}, nothing charged, nothing to reverse`, { result: code });
      } else {
        log.warning('micropay never left the box (no connection to WeChat Pay); nothing charged, nothing to reverse', {
          failure: outcome.failure,
          result: code,
        });
      }
      return failed;
    }

    if (signal?.aborted) {
      this.journal.addEvent(saleId, 'micropay_answer', outcomeDetail(outcome));
      return this.reverse(saleId, 'CANCELLED', 'cashier cancelled while WeChat Pay was asked');
    }

    if (outcome.kind === 'success') return this.settlePaid(sale, outcome, 'micropay_answer');

    let passwordWait = false;
    if (outcome.kind === 'business') {
      const action = micropayAction(outcome.errCode);
      if (action === 'final' || action === 'config') {
        sale = this.journal.transition(
          saleId,
          'failed',
          { finalCode: outcome.errCode, finalText: cashierText(outcome.errCode) },
          { kind: 'micropay_answer', detail: outcomeDetail(outcome) },
        );
        if (action === 'config') {
          log.error('WeChat Pay refused the request as misconfigured; nothing charged', { result: outcome.errCode });
        } else {
          log.info('payment declined by WeChat Pay; nothing charged', { result: outcome.errCode });
        }
        return sale;
      }
      passwordWait = outcome.errCode === 'USERPAYING';
    }

    sale = this.journal.transition(saleId, 'polling', {}, { kind: 'micropay_answer', detail: outcomeDetail(outcome) });
    if (passwordWait) {
      log.info('payer must confirm in WeChat; waiting');
      onProgress?.('password', sale);
    } else {
      log.warning('micropay result unknown; asking WeChat Pay with orderquery', this.outcomeFields(outcome));
    }
    return this.poll(saleId, { passwordWait, signal, onProgress });
  }

  private async poll(
    saleId: number,
    options: { passwordWait: boolean; signal: AbortSignal | undefined; onProgress: PayOptions['onProgress'] },
  ): Promise<Sale> {
    const { signal } = options;
    let passwordWait = options.passwordWait;
    const log = this.saleLog(this.current(saleId));
    const started = this.clock.now();
    const maxQueries = Math.max(1, Math.ceil(this.userpayingTimeoutMs / this.pollMs));
    // The payer needs a moment to type a password; an unknown result (SYSTEMERROR, a dropped
    // connection) is asked about at once.
    let delay = passwordWait ? this.pollMs : 0;
    for (let query = 1; query <= maxQueries; query++) {
      // The cashier's cancel ends the wait at once (the sleep rejects) or is seen right after it.
      const waited = delay > 0 ? await this.clock.sleep(delay, signal).then(() => true, () => false) : true;
      if (!waited || signal?.aborted) return this.reverse(saleId, 'CANCELLED', 'cashier cancelled while the payer was confirming');
      delay = this.pollMs;
      const sale = this.current(saleId);
      const outcome = await this.gateway.orderquery({ outTradeNo: sale.outTradeNo });
      this.onGatewayOutcome?.(outcome);
      log.info('orderquery answered', { ...this.outcomeFields(outcome), query });
      if (signal?.aborted) {
        this.journal.addEvent(saleId, 'orderquery_answer', outcomeDetail(outcome));
        return this.reverse(saleId, 'CANCELLED', 'cashier cancelled while the payer was confirming');
      }
      if (outcome.kind === 'success') {
        const state = outcome.fields.trade_state ?? '';
        const cls = tradeStateClass(state);
        if (cls === 'paid') return this.settlePaid(sale, outcome, 'orderquery_answer');
        if (cls === 'closed') {
          const done = this.journal.transition(
            saleId,
            'failed',
            { finalCode: state, finalText: cashierText(state) },
            { kind: 'orderquery_answer', detail: outcomeDetail(outcome) },
          );
          log.info('order closed at WeChat Pay; nothing charged', { result: state });
          return done;
        }
        if (cls === 'reverse') {
          this.journal.addEvent(saleId, 'orderquery_answer', outcomeDetail(outcome));
          log.info('payer cancelled or payment failed in WeChat; reversing', { result: state });
          return this.reverse(saleId, 'REVERSED', 'the payer cancelled or the payment failed in WeChat');
        }
        if (state === 'USERPAYING' && !passwordWait) {
          passwordWait = true;
          options.onProgress?.('password', this.current(saleId));
        }
      }
      this.journal.addEvent(saleId, 'orderquery_answer', outcomeDetail(outcome));
      if (this.clock.now() - started >= this.userpayingTimeoutMs) break;
    }
    if (passwordWait) {
      log.info('payer did not confirm in time; reversing');
      return this.reverse(saleId, 'TIMEOUT_REVERSED', 'password not entered in time');
    }
    log.warning('result still unknown after querying; reversing');
    return this.reverse(saleId, 'REVERSED', 'result unknown after querying');
  }

  /**
   * A verified answer that says paid: the sale is paid if the answer is about this order and this amount;
   * if it names another order or amount it is not believed, and the order is reversed (the payer gets back
   * whatever was taken).
   */
  private settlePaid(sale: Sale, outcome: ApiOutcome & { kind: 'success' }, kind: 'micropay_answer' | 'orderquery_answer'): Promise<Sale> | Sale {
    const mismatch = this.paidMismatch(sale, outcome);
    if (mismatch === null) return this.markPaid(sale.id, outcome, kind);
    this.journal.addEvent(sale.id, kind, outcomeDetail(outcome));
    this.saleLog(sale).error(`${kind === 'micropay_answer' ? 'WeChat Pay answered' : 'orderquery says'} paid for another order or amount; reversing`, {
      reason: mismatch,
    });
    return this.reverse(sale.id, 'REVERSED', mismatch);
  }

  private paidMismatch(sale: Sale, outcome: ApiOutcome & { kind: 'success' }): string | null {
    const fee = outcome.fields.total_fee;
    const echoed = outcome.fields.out_trade_no;
    if (echoed !== undefined && echoed !== sale.outTradeNo) return `answer names out_trade_no ${echoed}`;
    if (fee !== undefined && fee !== String(sale.amountFen)) return `answer says total_fee ${fee}, sale is ${sale.amountFen}`;
    if (!outcome.fields.transaction_id) return 'answer has no transaction_id';
    return null;
  }

  private markPaid(saleId: number, outcome: ApiOutcome & { kind: 'success' }, kind: string): Sale {
    const transactionId = outcome.fields.transaction_id ?? '';
    const paidAt = chinaTimeMs(outcome.fields.time_end ?? '') ?? this.clock.now();
    const sale = this.journal.transition(saleId, 'paid', { transactionId, paidAt, finalCode: null, finalText: null }, {
      kind,
      detail: outcomeDetail(outcome),
    });
    this.saleLog(sale).info('paid', { transaction_id: transactionId, ms: outcome.ms });
    return sale;
  }

  /**
   * Moves a sale to reversing (committed first), then tries to reverse it while the register waits.
   * If WeChat Pay has not confirmed after the foreground attempts, the sale is reported REVERSE_PENDING and
   * the background queue keeps trying, across restarts, until it is confirmed.
   */
  async reverse(saleId: number, reason: string, why: string): Promise<Sale> {
    let sale = this.current(saleId);
    if (sale.state !== 'reversing') {
      sale = this.journal.transition(saleId, 'reversing', { reverseReason: reason, finalCode: null, finalText: null }, {
        kind: 'reverse_started',
        detail: JSON.stringify({ reason, why }),
      });
    }
    if (this.reversing.has(saleId)) return sale;
    this.reversing.add(saleId);
    try {
      await this.respectReverseDelay(sale);
      for (let attempt = 1; attempt <= this.foregroundReverseAttempts; attempt++) {
        const after = await this.reverseOnce(saleId);
        if (after.state !== 'reversing') return after;
        if (attempt < this.foregroundReverseAttempts) await this.clock.sleep(this.backoffFor(after.reverseAttempts));
      }
      return this.markReversePending(saleId);
    } finally {
      this.reversing.delete(saleId);
    }
  }

  /** WeChat Pay: do not reverse within 15 s of placing the order. A clock that went back waits at most that. */
  private async respectReverseDelay(sale: Sale): Promise<void> {
    if (sale.submittedAt === null) return;
    const elapsed = this.clock.now() - sale.submittedAt;
    const wait = Math.min(this.minReverseDelayMs, Math.max(0, this.minReverseDelayMs - elapsed));
    if (wait > 0) await this.clock.sleep(wait);
  }

  private backoffFor(attempts: number): number {
    const index = Math.min(Math.max(attempts - 1, 0), this.backoff.length - 1);
    return this.backoff[index] ?? 1000;
  }

  /** One reverse call and its committed consequence. Returns the sale as it now stands. */
  private async reverseOnce(saleId: number): Promise<Sale> {
    const sale = this.current(saleId);
    const log = this.saleLog(sale);
    const outcome = await this.gateway.reverse({ outTradeNo: sale.outTradeNo });
    this.onGatewayOutcome?.(outcome);
    const attempts = sale.reverseAttempts + 1;
    const reason = sale.reverseReason ?? 'REVERSED';
    const detail = outcomeDetail(outcome);

    const confirmed = outcome.kind === 'success' && outcome.fields.recall !== 'Y';
    // ORDERNOTEXIST: WeChat Pay never registered the order, so there is nothing to give back. The 15 s
    // wait before any reverse has let an in-flight micropay land first.
    const neverExisted = outcome.kind === 'business' && outcome.errCode === 'ORDERNOTEXIST';
    if (confirmed || neverExisted) {
      const done = this.journal.transition(
        saleId,
        'reversed',
        { reverseAttempts: attempts, nextReverseAt: null, finalCode: reason, finalText: cashierText(reason) },
        { kind: 'reverse_answer', detail },
      );
      if (confirmed) log.info('reversed at WeChat Pay', { result: reason, attempts, ms: outcome.ms });
      else log.warning('WeChat Pay has no such order; nothing to reverse', { result: reason });
      return done;
    }
    if (outcome.kind === 'business' && outcome.errCode !== 'SYSTEMERROR' && outcome.errCode !== 'USERPAYING') {
      // REVERSE_EXPIRE and the like: WeChat Pay will never accept this reverse. A person must act.
      const done = this.journal.transition(
        saleId,
        'reverse_failed',
        {
          reverseAttempts: attempts,
          nextReverseAt: null,
          finalCode: 'REVERSE_PENDING',
          finalText: `reversal refused (${outcome.errCode}): refund it in the merchant platform`,
        },
        { kind: 'reverse_answer', detail },
      );
      log.error('WeChat Pay refused the reversal; refund it by hand', { result: outcome.errCode });
      return done;
    }
    const nextReverseAt = this.clock.now() + this.backoffFor(attempts);
    const pending = this.journal.update(saleId, { reverseAttempts: attempts, nextReverseAt }, { kind: 'reverse_answer', detail });
    const fields = this.outcomeFields(outcome);
    if (outcome.kind === 'success') log.warning('WeChat Pay asks to call reverse again (recall=Y)', { attempts });
    else log.error('reversal not confirmed yet; will retry', { ...fields, attempts });
    return pending;
  }

  private markReversePending(saleId: number): Sale {
    const sale = this.current(saleId);
    if (sale.state !== 'reversing') return sale;
    if (sale.finalCode === 'REVERSE_PENDING') return sale;
    const pending = this.journal.update(
      saleId,
      { finalCode: 'REVERSE_PENDING', finalText: cashierText('REVERSE_PENDING') },
      { kind: 'reverse_pending', detail: JSON.stringify({ attempts: sale.reverseAttempts }) },
    );
    this.saleLog(pending).error('reversal not confirmed; the box keeps trying in the background', {
      attempts: pending.reverseAttempts,
    });
    return pending;
  }

  /**
   * A technician's reversal (`scanbox reverse OUT_TRADE_NO`), journalled like any other: a paid sale is
   * reversed (WeChat Pay refunds the payer), a reversal that is pending or was refused is tried again now.
   * Nothing else can be reversed: a sale still in progress finishes by itself, a failed one took nothing.
   */
  async manualReverse(outTradeNo: string): Promise<{ ok: boolean; sale: Sale | null; text: string }> {
    const sale = this.journal.byOutTradeNo(outTradeNo);
    if (!sale) return { ok: false, sale: null, text: `no sale with out_trade_no ${outTradeNo}` };
    const log = this.saleLog(sale);
    if (sale.state === 'reversed') return { ok: true, sale, text: 'already reversed' };
    if (sale.state === 'failed') {
      return { ok: false, sale, text: `nothing to reverse: the sale failed (${sale.finalCode}) and nothing was charged` };
    }
    if (sale.state === 'open' || sale.state === 'paying' || sale.state === 'polling') {
      return { ok: false, sale, text: `the sale is still in progress (${sale.state}); it ends by itself` };
    }
    if (this.reversing.has(sale.id)) return { ok: false, sale, text: 'a reversal of this sale is running right now; try again shortly' };
    if (sale.state === 'paid' && this.journal.refunds.ofSale(sale.id).some((refund) => refundHoldsMoney(refund.state))) {
      // WeChat Pay will not reverse an order with refunds, and a reversal would give back more than the sale.
      return { ok: false, sale, text: 'the sale has refunds: refund what is left of it instead (scanbox refund)' };
    }
    log.warning('manual reversal requested by a technician', { state: sale.state });
    if (sale.state === 'paid' || sale.state === 'reverse_failed') {
      const reason = sale.state === 'paid' ? 'REVERSED' : (sale.reverseReason ?? 'REVERSED');
      this.journal.transition(sale.id, 'reversing', { reverseReason: reason, finalCode: null, finalText: null, nextReverseAt: null }, {
        kind: 'manual_reverse',
        detail: JSON.stringify({ from: sale.state }),
      });
    } else {
      this.journal.update(sale.id, { nextReverseAt: null }, { kind: 'manual_reverse', detail: JSON.stringify({ from: sale.state }) });
    }
    // Reversing a paid order is a refund, not a race with an in-flight micropay: no 15 s wait is needed
    // beyond the one respectReverseDelay already applies from the order's time.
    const after = await this.reverse(sale.id, this.current(sale.id).reverseReason ?? 'REVERSED', 'technician');
    const ok = after.state === 'reversed';
    return {
      ok,
      sale: after,
      text: ok
        ? 'reversed at WeChat Pay'
        : after.state === 'reverse_failed'
          ? after.finalText ?? 'WeChat Pay refused the reversal'
          : 'not confirmed yet: the box keeps trying in the background (REVERSE_PENDING)',
    };
  }

  /**
   * Finishes every unfinished sale in the journal before new sales are taken: an open sale never sent
   * anything and just ends; a sale that reached WeChat Pay is queried and reversed unless WeChat Pay
   * closed it (paid but never reported PAID is reversed too: the register never heard PAID). A reversal
   * that cannot be confirmed now is left to the background queue as REVERSE_PENDING.
   */
  async recover(): Promise<Sale[]> {
    const finished: Sale[] = [];
    for (const stale of this.journal.unfinished()) {
      const log = this.saleLog(stale);
      log.warning('recovering a sale left unfinished by a restart', { state: stale.state });
      finished.push(await this.recoverOne(stale.id));
    }
    return finished;
  }

  /**
   * Finishes one unfinished sale by the money rules, as recovery does at start: the box's own use when a bug
   * stopped a sale half-way (the register then hears how it ended).
   */
  finishUnfinished(saleId: number): Promise<Sale> {
    return this.recoverOne(saleId);
  }

  private async recoverOne(saleId: number): Promise<Sale> {
    const sale = this.current(saleId);
    const state: SaleState = sale.state;
    if (state === 'open') {
      return this.failOpen(saleId, 'INTERRUPTED', 'box restarted before the code was scanned; nothing charged');
    }
    if (state === 'reversing') return this.reverse(saleId, sale.reverseReason ?? 'INTERRUPTED', 'restart');
    if (state === 'paying' || state === 'polling') {
      const outcome = await this.gateway.orderquery({ outTradeNo: sale.outTradeNo });
      this.onGatewayOutcome?.(outcome);
      if (outcome.kind === 'success' && tradeStateClass(outcome.fields.trade_state ?? '') === 'closed') {
        const state = outcome.fields.trade_state ?? 'CLOSED';
        return this.journal.transition(
          saleId,
          'failed',
          { finalCode: 'INTERRUPTED', finalText: `box restarted; order ${state.toLowerCase()} at WeChat Pay, nothing charged` },
          { kind: 'orderquery_answer', detail: outcomeDetail(outcome) },
        );
      }
      this.journal.addEvent(saleId, 'orderquery_answer', outcomeDetail(outcome));
      return this.reverse(saleId, 'INTERRUPTED', 'box restarted mid-payment');
    }
    return sale;
  }

  /** Tries every due pending reversal once. Returns how many were tried. */
  async runDueReversals(): Promise<number> {
    let tried = 0;
    for (const sale of this.journal.pendingReversals()) {
      if (this.reversing.has(sale.id)) continue;
      if (sale.nextReverseAt !== null && sale.nextReverseAt > this.clock.now()) continue;
      this.reversing.add(sale.id);
      try {
        tried++;
        const after = await this.reverseOnce(sale.id);
        if (after.state === 'reversing') this.markReversePending(sale.id);
      } finally {
        this.reversing.delete(sale.id);
      }
    }
    return tried;
  }

  /** The background reversal queue: wakes every `tickMs`, tries what is due, until stopped. */
  startReversalQueue(tickMs = 1000): void {
    if (this.queue) return;
    const stop = new AbortController();
    const done = (async () => {
      while (!stop.signal.aborted) {
        try {
          await this.runDueReversals();
        } catch (error) {
          this.log.error('reversal queue failed; will retry', { error: (error as Error).message });
        }
        try {
          await this.clock.sleep(tickMs, stop.signal);
        } catch {
          break;
        }
      }
    })();
    this.queue = { stop, done };
  }

  async stopReversalQueue(): Promise<void> {
    if (!this.queue) return;
    const { stop, done } = this.queue;
    this.queue = null;
    stop.abort();
    await done;
  }

  private current(saleId: number): Sale {
    const sale = this.journal.get(saleId);
    if (!sale) throw new Error(`no sale with id ${saleId}`);
    return sale;
  }

  private outcomeFields(outcome: ApiOutcome): Record<string, string | number> {
    const fields: Record<string, string | number> = { result: outcome.kind, ms: outcome.ms };
    if (outcome.kind === 'business') fields.err_code = outcome.errCode;
    if (outcome.kind === 'unknown') fields.failure = outcome.failure;
    if (outcome.kind === 'unknown' && outcome.refusal) fields.refusal = outcome.refusal;
    if (outcome.kind === 'success' && outcome.fields.trade_state) fields.trade_state = outcome.fields.trade_state;
    return fields;
  }
}

export { isFinal };
export type { SalePatch };
