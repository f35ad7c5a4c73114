import type { Clock } from '../clock.js';
import { refundText } from '../codes.js';
import { messageOf } from '../errors.js';
import type { Journal } from '../journal/journal.js';
import type { NewRefund, NewRefundResult, Refund } from '../journal/refunds.js';
import { refundAccepted } from '../journal/states.js';
import type { Logger } from '../log.js';
import { formatYuan } from '../money.js';
import type { ApiOutcome, WechatPayClient } from '../wechatpay/client.js';
import { refundAction, refundStatusClass } from '../wechatpay/codes.js';

/**
 * A refund's cycle beside the sale's (contract §6.6, after-the-sale.md §1-2), as a state machine over the
 * journal's refund states (src/journal/states.ts):
 *
 * - the refund is committed with its out_refund_no before anything is sent, and moved to `submitted` before
 *   each first request leaves;
 * - an unknown outcome (timeout, reset, SYSTEMERROR, BIZERR_NEED_RETRY, an answer that does not verify) is
 *   asked about with refundquery, and the refund is sent again with the SAME out_refund_no, with back-off,
 *   never under a new number: one RID refunds at most once;
 * - INVALID_REQ_TOO_MUCH / FREQUENCY_LIMITED: sent again later with the same number;
 * - accepted (WeChat Pay's SUCCESS) is followed in the background with refundquery until SUCCESS, REFUNDCLOSE
 *   or CHANGE; the last two are logged at error level (the merchant must act in the merchant platform);
 * - recovery at start, and the background queue, finish every unfinished refund.
 *
 * Like the sale's engine, it knows nothing of serial ports or lights; box.ts wires it to the register.
 */

/** The two calls a refund needs: the real client, or a stand-in that wraps it (tests, backend mode). */
export type RefundGateway = Pick<WechatPayClient, 'refund' | 'refundquery'>;

export interface RefundEngineOptions {
  journal: Journal;
  gateway: RefundGateway;
  clock: Clock;
  log: Logger;
  /** Between attempts of a refund whose outcome is unknown; the last value repeats. */
  retryBackoffMs?: readonly number[];
  /** After INVALID_REQ_TOO_MUCH or FREQUENCY_LIMITED (WeChat Pay: wait a minute). */
  slowDownMs?: number;
  /** Between refundqueries of an accepted refund; the last value repeats. */
  followMs?: readonly number[];
  /** Told about every answer (or its absence) from WeChat Pay. */
  onGatewayOutcome?: (outcome: ApiOutcome) => void;
}

const DEFAULT_RETRY_BACKOFF = [5_000, 15_000, 30_000, 60_000, 120_000, 300_000, 900_000] as const;
/** The money reaches a WeChat balance within about 20 minutes, a bank card within days. */
const DEFAULT_FOLLOW = [10_000, 30_000, 60_000, 300_000, 900_000, 3_600_000] as const;

/** What the register is told about a refund, derived only from its journal row (contract §3). */
export function refundLine(refund: Refund): string {
  if (refundAccepted(refund.state)) return `REFUNDED ${refund.rid} ${refund.ref} ${refund.amountFen} ${refund.outRefundNo}`;
  if (refund.state === 'failed' || refund.finalCode !== null) {
    const code = refund.finalCode ?? 'FAILED';
    return `FAILED ${refund.rid} ${code} ${refund.finalText ?? refundText(code)}`;
  }
  return `PENDING ${refund.rid}`;
}

/** A technician's refund as the engine answers it: `made` when this request made it (not a RID used before). */
export interface TechnicianRefund {
  refund: Refund | null;
  made: boolean;
  line: string;
  text: string;
}

function detailOf(outcome: ApiOutcome, extra: Record<string, string | number> = {}): string {
  const detail: Record<string, string | number> = { call: outcome.call, result: outcome.kind, ms: outcome.ms, ...extra };
  if (outcome.origin) detail.origin = outcome.origin;
  if (outcome.kind === 'unknown') {
    detail.failure = outcome.failure;
    detail.message = outcome.message;
  } else if (outcome.kind === 'business') {
    detail.err_code = outcome.errCode;
    if (outcome.errCodeDes) detail.err_code_des = outcome.errCodeDes;
  } else {
    for (const key of ['refund_id', 'refund_fee', 'out_refund_no', 'refund_count'] as const) {
      const value = outcome.fields[key];
      if (value !== undefined) detail[key] = value;
    }
  }
  return JSON.stringify(detail);
}

/** This refund as refundquery lists it (`out_refund_no_$n` = ours), or null when the answer does not name it. */
function listed(outcome: ApiOutcome & { kind: 'success' }, outRefundNo: string): { status: string; refundId: string | null; fee: string | null } | null {
  for (const [name, value] of Object.entries(outcome.fields)) {
    const n = /^out_refund_no_(\d{1,3})$/.exec(name)?.[1];
    if (n === undefined || value !== outRefundNo) continue;
    return {
      status: outcome.fields[`refund_status_${n}`] ?? '',
      refundId: outcome.fields[`refund_id_${n}`] ?? null,
      fee: outcome.fields[`refund_fee_${n}`] ?? null,
    };
  }
  return null;
}

export class RefundEngine {
  private readonly o: RefundEngineOptions;
  private readonly retryBackoff: readonly number[];
  private readonly follow: readonly number[];
  private readonly slowDownMs: number;
  /** Refunds being worked on now, so the queue, recovery and the register never drive one twice at once. */
  private readonly working = new Set<number>();
  private queue: { stop: AbortController; done: Promise<void> } | null = null;

  constructor(options: RefundEngineOptions) {
    this.o = options;
    this.retryBackoff = options.retryBackoffMs ?? DEFAULT_RETRY_BACKOFF;
    this.follow = options.followMs ?? DEFAULT_FOLLOW;
    this.slowDownMs = options.slowDownMs ?? 60_000;
  }

  private refundLog(refund: Refund): Logger {
    return this.o.log.child({ rid: refund.rid, ref: refund.ref, out_refund_no: refund.outRefundNo, amount: formatYuan(refund.amountFen) });
  }

  /**
   * Records a refund (or finds the RID's), checking the sale's PAID attempt, what is left of it and the
   * register's day in the same transaction. Nothing is sent.
   */
  request(input: NewRefund): NewRefundResult {
    const result = this.o.journal.refunds.create(input);
    if (result.kind === 'created') this.refundLog(result.refund).info('refund recorded', { source: input.source, out_trade_no: result.refund.outTradeNo });
    else if (result.kind === 'rid_reused') {
      this.o.log.warning('refund refused: RID already used for another sale or amount', { rid: input.rid, ref: input.ref });
    }
    return result;
  }

  get(refundId: number): Refund {
    const refund = this.o.journal.refunds.get(refundId);
    if (!refund) throw new Error(`no refund with id ${refundId}`);
    return refund;
  }

  /**
   * Works on an unfinished refund until WeChat Pay has accepted or refused it, or its outcome stays unknown
   * for now (then the next attempt is scheduled for the background queue). Returns the refund as it stands.
   * Never two at once for one refund: a second caller gets the row as it is.
   */
  async drive(refundId: number): Promise<Refund> {
    if (this.working.has(refundId)) return this.get(refundId);
    this.working.add(refundId);
    try {
      const refund = this.get(refundId);
      if (refund.state === 'accepted') return await this.followOnce(refund);
      if (refund.state !== 'requested' && refund.state !== 'submitted') return refund;
      return await this.attempt(refund);
    } finally {
      this.working.delete(refundId);
    }
  }

  /**
   * The register was not given an answer in time: it hears REFUND_PENDING, and the box goes on asking and
   * retrying with the same refund number. Nothing changes for a refund that has its answer already.
   */
  markPending(refundId: number): Refund {
    const refund = this.get(refundId);
    if (refund.state !== 'requested' && refund.state !== 'submitted') return refund;
    if (refund.finalCode === 'REFUND_PENDING') return refund;
    const pending = this.o.journal.refunds.update(
      refundId,
      { finalCode: 'REFUND_PENDING', finalText: refundText('REFUND_PENDING') },
      { kind: 'refund_pending', detail: JSON.stringify({ attempts: refund.attempts }) },
    );
    this.refundLog(pending).error('refund not confirmed by WeChat Pay yet; the box keeps asking with the same refund number', {
      attempts: pending.attempts,
    });
    return pending;
  }

  /**
   * Works on a new refund for at most `ms` (contract §3: the register hears within about 10 s), then returns
   * its committed row: accepted or failed, or marked REFUND_PENDING while its outcome is not confirmed. A
   * drive still under way goes on; its result lands in the journal.
   */
  async answerWithin(refundId: number, ms: number): Promise<Refund> {
    const deadline = new AbortController();
    const driving = this.drive(refundId);
    try {
      const done = await Promise.race([driving.then(() => true), this.o.clock.sleep(ms, deadline.signal).then(() => false)]);
      if (!done) void driving.catch((error: unknown) => this.o.log.error('refund stopped by an error; the queue takes it up again', { error: messageOf(error) }));
    } finally {
      deadline.abort();
    }
    const now = this.get(refundId);
    return now.state === 'requested' || now.state === 'submitted' ? this.markPending(refundId) : now;
  }

  /**
   * A technician's refund (`scanbox refund`, through the daemon or alone): recorded like the register's but
   * without the register's switch and day cap, then worked on for up to `ms`.
   */
  async technicianRefund(req: { ref: string; amountFen: number; rid: string }, ms: number): Promise<TechnicianRefund> {
    const result = this.request({ ...req, source: 'technician' });
    switch (result.kind) {
      case 'created': {
        const refund = await this.answerWithin(result.refund.id, ms);
        return { refund, made: true, line: refundLine(refund), text: refund.finalText ?? (refundAccepted(refund.state) ? 'accepted by WeChat Pay' : '') };
      }
      case 'existing':
        return { refund: result.refund, made: false, line: refundLine(result.refund), text: 'this RID was refunded before: nothing refunded again' };
      case 'rid_reused':
        return { refund: null, made: false, line: `ERR RID_REUSED ${req.rid}`, text: `RID ${req.rid} was used for ${result.refund.ref} ${formatYuan(result.refund.amountFen)} yuan: choose another` };
      case 'not_paid':
        return { refund: null, made: false, line: `FAILED ${req.rid} NOT_PAID ${refundText('NOT_PAID')}`, text: refundText('NOT_PAID') };
      case 'over_amount': {
        const text = `${refundText('OVER_AMOUNT')} (${formatYuan(result.leftFen)} yuan left)`;
        return { refund: null, made: false, line: `FAILED ${req.rid} OVER_AMOUNT ${text}`, text };
      }
      case 'limit':
        // Only the register has a day cap.
        throw new Error('a technician refund has no day cap');
    }
  }

  private backoffFor(list: readonly number[], attempts: number): number {
    return list[Math.min(Math.max(attempts - 1, 0), list.length - 1)] ?? 60_000;
  }

  private async attempt(start: Refund): Promise<Refund> {
    let refund = start;
    const log = this.refundLog(refund);
    if (refund.state === 'submitted') {
      // An earlier request may have been accepted: ask before sending it again.
      const settled = await this.query(refund);
      if (settled !== null) return settled;
      refund = this.get(refund.id);
    } else {
      refund = this.o.journal.refunds.transition(refund.id, 'submitted', {}, { kind: 'refund_sent', detail: JSON.stringify({ attempt: 1 }) });
    }
    log.info('asking WeChat Pay to refund', { out_trade_no: refund.outTradeNo, attempt: refund.attempts + 1 });
    const outcome = await this.o.gateway.refund({
      outTradeNo: refund.outTradeNo,
      outRefundNo: refund.outRefundNo,
      totalFee: refund.saleAmountFen,
      refundFee: refund.amountFen,
    });
    this.o.onGatewayOutcome?.(outcome);
    const attempts = refund.attempts + 1;
    if (outcome.kind === 'success') {
      const mismatch = this.acceptedMismatch(refund, outcome);
      if (mismatch === null) {
        const accepted = this.o.journal.refunds.transition(
          refund.id,
          'accepted',
          { refundId: outcome.fields.refund_id ?? null, attempts, finalCode: null, finalText: null, nextAttemptAt: this.o.clock.now() + this.backoffFor(this.follow, 1) },
          { kind: 'refund_answer', detail: detailOf(outcome) },
        );
        log.info('refund accepted by WeChat Pay', { refund_id: accepted.refundId ?? '-', ms: outcome.ms });
        return accepted;
      }
      log.error('WeChat Pay answered a refund with another number or amount; asking again', { reason: mismatch });
    } else if (outcome.kind === 'business') {
      // The merchant's backend refused it by its policy (backend/gateway.ts): nothing reached WeChat Pay, final,
      // when no earlier attempt may have reached it (after one, the refund stays open and is asked about).
      const byBackend = outcome.fields.backend_refusal !== undefined && refund.attempts === 0;
      const action = byBackend ? 'final' : refundAction(outcome.errCode);
      if (action === 'final') {
        const failed = this.o.journal.refunds.transition(
          refund.id,
          'failed',
          { attempts, nextAttemptAt: null, finalCode: outcome.errCode, finalText: byBackend ? outcome.errCodeDes : refundText(outcome.errCode) },
          { kind: 'refund_answer', detail: detailOf(outcome) },
        );
        log.warning('WeChat Pay refused the refund; nothing refunded', { result: outcome.errCode });
        return failed;
      }
      if (action === 'wait') {
        const later = this.o.journal.refunds.update(
          refund.id,
          { attempts, nextAttemptAt: this.o.clock.now() + this.slowDownMs },
          { kind: 'refund_answer', detail: detailOf(outcome) },
        );
        log.warning('WeChat Pay asks to slow down; the refund is sent again later with the same number', { result: outcome.errCode });
        return later;
      }
    }
    // Unknown: the refund may have been accepted. Ask, and if WeChat Pay does not know it, send it again later.
    this.o.journal.refunds.update(refund.id, { attempts }, { kind: 'refund_answer', detail: detailOf(outcome) });
    log.warning('refund result unknown; asking WeChat Pay with refundquery', this.fieldsOf(outcome));
    const settled = await this.query(this.get(refund.id));
    return settled ?? this.get(refund.id);
  }

  private acceptedMismatch(refund: Refund, outcome: ApiOutcome & { kind: 'success' }): string | null {
    const { out_refund_no: number, refund_fee: fee } = outcome.fields;
    if (number !== undefined && number !== refund.outRefundNo) return `answer names out_refund_no ${number}`;
    if (fee !== undefined && fee !== String(refund.amountFen)) return `answer says refund_fee ${fee}, refund is ${refund.amountFen}`;
    return null;
  }

  /**
   * refundquery for a refund that may or may not have reached WeChat Pay. Returns the refund once the answer
   * settles it (accepted or beyond), or null, after scheduling the next attempt, when it does not.
   */
  private async query(refund: Refund): Promise<Refund | null> {
    const log = this.refundLog(refund);
    const outcome = await this.o.gateway.refundquery({ outRefundNo: refund.outRefundNo });
    this.o.onGatewayOutcome?.(outcome);
    const attempts = refund.attempts + 1;
    const entry = outcome.kind === 'success' ? listed(outcome, refund.outRefundNo) : null;
    if (entry !== null && (entry.fee === null || entry.fee === String(refund.amountFen))) {
      const settled = this.settleListed(refund, entry, attempts, outcome, 'refundquery_answer');
      if (settled) return settled;
    }
    const notThere = outcome.kind === 'business' && outcome.errCode === 'REFUNDNOTEXIST';
    const next = this.o.clock.now() + this.backoffFor(this.retryBackoff, attempts);
    this.o.journal.refunds.update(refund.id, { attempts, nextAttemptAt: next }, { kind: 'refundquery_answer', detail: detailOf(outcome) });
    if (notThere) log.info('WeChat Pay has not got the refund; it is sent again with the same number', { next_in_ms: next - this.o.clock.now() });
    else log.warning('refund still not confirmed; asking again later with the same number', { ...this.fieldsOf(outcome), attempts });
    return null;
  }

  /** A refund refundquery names: its status moves the row (PROCESSING: accepted, or still accepted). */
  private settleListed(
    refund: Refund,
    entry: { status: string; refundId: string | null },
    attempts: number,
    outcome: ApiOutcome,
    kind: string,
  ): Refund | null {
    const log = this.refundLog(refund);
    const status = refundStatusClass(entry.status);
    const refundId = entry.refundId ?? refund.refundId;
    const detail = detailOf(outcome, { refund_status: entry.status });
    if (status === 'processing') {
      const next = this.o.clock.now() + this.backoffFor(this.follow, refund.state === 'accepted' ? attempts : 1);
      if (refund.state === 'accepted') {
        return this.o.journal.refunds.update(refund.id, { attempts, nextAttemptAt: next, refundId }, { kind, detail });
      }
      const accepted = this.o.journal.refunds.transition(refund.id, 'accepted', { attempts, nextAttemptAt: next, refundId, finalCode: null, finalText: null }, { kind, detail });
      log.info('refund accepted by WeChat Pay (found by refundquery)', { refund_id: refundId ?? '-' });
      return accepted;
    }
    const to = status === 'succeeded' ? 'succeeded' : status === 'closed' ? 'closed' : 'change';
    const done = this.o.journal.refunds.transition(
      refund.id,
      to,
      {
        attempts,
        nextAttemptAt: null,
        refundId,
        // A REFUND_PENDING the register heard is replaced by the outcome; closed and change keep theirs for status.
        finalCode: to === 'succeeded' ? null : entry.status,
        finalText: to === 'succeeded' ? null : refundText(entry.status),
      },
      { kind, detail },
    );
    if (to === 'succeeded') log.info('refund reached the payer', { refund_id: refundId ?? '-' });
    else if (to === 'closed') log.error('WeChat Pay closed the refund: nothing was refunded; refund it in the merchant platform', { result: entry.status });
    else log.error('the refund could not reach the payer (CHANGE): handle it in the merchant platform', { result: entry.status });
    return done;
  }

  /** One refundquery of an accepted refund. */
  private async followOnce(refund: Refund): Promise<Refund> {
    const outcome = await this.o.gateway.refundquery({ outRefundNo: refund.outRefundNo });
    this.o.onGatewayOutcome?.(outcome);
    const attempts = refund.attempts + 1;
    const entry = outcome.kind === 'success' ? listed(outcome, refund.outRefundNo) : null;
    if (entry !== null) {
      const settled = this.settleListed(refund, entry, attempts, outcome, 'refundquery_answer');
      if (settled) return settled;
    }
    return this.o.journal.refunds.update(
      refund.id,
      { attempts, nextAttemptAt: this.o.clock.now() + this.backoffFor(this.follow, attempts) },
      { kind: 'refundquery_answer', detail: detailOf(outcome) },
    );
  }

  /**
   * At start, before the register is served: every refund a restart left requested or submitted is worked
   * on once now (its outcome asked about first); accepted ones are left to the background queue to follow.
   */
  async recover(): Promise<Refund[]> {
    const recovered: Refund[] = [];
    for (const refund of this.o.journal.refunds.unfinished()) {
      if (refund.state === 'accepted') continue;
      this.refundLog(refund).warning('recovering a refund left unfinished by a restart', { state: refund.state });
      const after = await this.drive(refund.id);
      recovered.push(after.state === 'requested' || after.state === 'submitted' ? this.markPending(after.id) : after);
    }
    return recovered;
  }

  /** Works once on every unfinished refund that is due. Returns how many were tried. */
  async runDue(): Promise<number> {
    let tried = 0;
    for (const refund of this.o.journal.refunds.unfinished()) {
      if (this.working.has(refund.id)) continue;
      if (refund.nextAttemptAt !== null && refund.nextAttemptAt > this.o.clock.now()) continue;
      tried++;
      const after = await this.drive(refund.id);
      if (after.state === 'requested' || after.state === 'submitted') this.markPending(after.id);
    }
    return tried;
  }

  /** The background queue: wakes every `tickMs`, works on what is due, until stopped. */
  startQueue(tickMs = 5000): void {
    if (this.queue) return;
    const stop = new AbortController();
    const done = (async () => {
      while (!stop.signal.aborted) {
        try {
          await this.runDue();
        } catch (error) {
          this.o.log.error('refund queue failed; will retry', { error: messageOf(error) });
        }
        try {
          await this.o.clock.sleep(tickMs, stop.signal);
        } catch {
          break;
        }
      }
    })();
    this.queue = { stop, done };
  }

  async stopQueue(): Promise<void> {
    if (!this.queue) return;
    const { stop, done } = this.queue;
    this.queue = null;
    stop.abort();
    await done;
  }

  private fieldsOf(outcome: ApiOutcome): Record<string, string | number> {
    const fields: Record<string, string | number> = { result: outcome.kind, ms: outcome.ms };
    if (outcome.kind === 'business') fields.err_code = outcome.errCode;
    if (outcome.kind === 'unknown') fields.failure = outcome.failure;
    return fields;
  }
}
