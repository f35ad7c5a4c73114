/**
 * The journal's refunds: one row per RID with its own events and its own transition table (states.ts), in
 * the same SQLite file and under the same rules as the sales (contract §6.6): a refund is committed before
 * its request leaves the box, each change is one transaction, and the sale's refundable balance is checked in
 * the same transaction that records a new refund, so no two refunds at once (the register and a technician)
 * can refund more than the sale.
 */
import type { Database as SqliteDatabase, Statement } from 'better-sqlite3';
import { formatYuan } from '../money.js';
import { JournalError } from './journal.js';
import { REFUND_STATES, canRefundTransition, refundHoldsMoney, type RefundState } from './states.js';

export type RefundSource = 'register' | 'technician';

export interface Refund {
  id: number;
  /** The refund's idempotency key: the register's RID, or the technician's. Unique for ever. */
  rid: string;
  saleId: number;
  /** The sale's register REF, out_trade_no and amount (what WeChat Pay calls total_fee). */
  ref: string;
  outTradeNo: string;
  saleAmountFen: number;
  amountFen: number;
  /** The merchant's refund number at WeChat Pay: made once, reused by every retry. */
  outRefundNo: string;
  source: RefundSource;
  state: RefundState;
  /** WeChat Pay's refund_id, once it has told it. */
  refundId: string | null;
  /** FAILED code (NOTENOUGH, TRADE_OVERDUE ...), REFUND_PENDING once the register was told so, or null. */
  finalCode: string | null;
  finalText: string | null;
  /** Requests and queries made for it. */
  attempts: number;
  /** Wall ms: when the background queue next works on it. */
  nextAttemptAt: number | null;
  createdAt: number;
  updatedAt: number;
}

export interface RefundEvent {
  id: number;
  refundId: number;
  at: number;
  kind: string;
  detail: string;
}

export interface RefundPatch {
  refundId?: string | null;
  finalCode?: string | null;
  finalText?: string | null;
  attempts?: number;
  nextAttemptAt?: number | null;
}

export interface NewRefund {
  rid: string;
  /** The register REF of the sale: its PAID attempt is refunded. */
  ref: string;
  amountFen: number;
  source: RefundSource;
  /**
   * The register's cap (SCANBOX_REFUND_DAY_MAX) over its refunds created in [startMs, endMs), the business
   * day; none for a technician.
   */
  dayCap?: { maxFen: number; startMs: number; endMs: number };
}

export type NewRefundResult =
  /** Recorded (state requested) with its out_refund_no: nothing has been sent yet. */
  | { kind: 'created'; refund: Refund }
  /** The RID was used before for this REF and amount: that refund, whatever became of it. */
  | { kind: 'existing'; refund: Refund }
  /** The RID was used before for another REF or amount. */
  | { kind: 'rid_reused'; refund: Refund }
  /** No PAID sale with this REF. */
  | { kind: 'not_paid' }
  /** More than is left to refund of the sale. */
  | { kind: 'over_amount'; sale: { id: number; outTradeNo: string; amountFen: number }; leftFen: number }
  /** The register's refunds of the business day would pass the cap. */
  | { kind: 'limit'; usedFen: number; maxFen: number };

interface RefundRow {
  id: number;
  rid: string;
  sale_id: number;
  amount_fen: number;
  out_refund_no: string;
  source: RefundSource;
  state: RefundState;
  refund_id: string | null;
  final_code: string | null;
  final_text: string | null;
  attempts: number;
  next_attempt_at: number | null;
  created_at: number;
  updated_at: number;
  ref: string;
  out_trade_no: string;
  sale_amount_fen: number;
}

const COLUMNS = `r.id, r.rid, r.sale_id, r.amount_fen, r.out_refund_no, r.source, r.state, r.refund_id, r.final_code,
  r.final_text, r.attempts, r.next_attempt_at, r.created_at, r.updated_at,
  s.ref AS ref, s.out_trade_no AS out_trade_no, s.amount_fen AS sale_amount_fen`;
const FROM = 'refunds r JOIN sales s ON s.id = r.sale_id';
const HOLDING = REFUND_STATES.filter(refundHoldsMoney)
  .map((state) => `'${state}'`)
  .join(', ');
const UNFINISHED = "('requested', 'submitted', 'accepted')";
/** WeChat Pay allows 64; the box's own are far shorter. */
const OUT_REFUND_NO_MAX = 64;

const PATCH_COLUMNS = {
  refundId: 'refund_id',
  finalCode: 'final_code',
  finalText: 'final_text',
  attempts: 'attempts',
  nextAttemptAt: 'next_attempt_at',
} as const satisfies Record<keyof RefundPatch, keyof RefundRow>;

function toRefund(row: RefundRow): Refund {
  return {
    id: row.id,
    rid: row.rid,
    saleId: row.sale_id,
    ref: row.ref,
    outTradeNo: row.out_trade_no,
    saleAmountFen: row.sale_amount_fen,
    amountFen: row.amount_fen,
    outRefundNo: row.out_refund_no,
    source: row.source,
    state: row.state,
    refundId: row.refund_id,
    finalCode: row.final_code,
    finalText: row.final_text,
    attempts: row.attempts,
    nextAttemptAt: row.next_attempt_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function checkPatch(patch: RefundPatch): void {
  if (typeof patch !== 'object' || patch === null) throw new TypeError('patch must be an object');
  for (const [key, value] of Object.entries(patch)) {
    if (!Object.hasOwn(PATCH_COLUMNS, key)) throw new TypeError(`refund patch has an unknown field: ${key}`);
    if (value === undefined || value === null) continue;
    if (key === 'attempts' || key === 'nextAttemptAt') {
      if (!Number.isSafeInteger(value) || (value as number) < 0) throw new TypeError(`refund patch.${key} must be an integer >= 0`);
    } else if (typeof value !== 'string') throw new TypeError(`refund patch.${key} must be a string or null`);
  }
}

function checkEvent(event: { kind: string; detail: string }): void {
  if (typeof event?.kind !== 'string' || event.kind === '' || typeof event.detail !== 'string') {
    throw new TypeError('event must be { kind: non-empty string, detail: string }');
  }
}

export interface RefundBookContext {
  db: SqliteDatabase;
  path: string;
  /** `${deviceId}${tag}`: the prefix of every out_refund_no of this journal, as of every out_trade_no. */
  prefix: string;
  now: () => number;
  write: <T>(action: string, fn: () => T) => T;
  read: <T>(action: string, fn: () => T) => T;
}

export class RefundBook {
  private readonly c: RefundBookContext;
  /** A journal opened read-only at schema 1 (the daemon has not started on a new version yet) has no refunds. */
  private readonly present: boolean;
  private stmt: ReturnType<RefundBook['prepare']> | null = null;
  private txCreate: ((input: NewRefund) => NewRefundResult) | null = null;
  private txChange: ((id: number, to: RefundState | null, patch: RefundPatch, event?: { kind: string; detail: string }) => Refund) | null = null;

  constructor(context: RefundBookContext) {
    this.c = context;
    this.present =
      (context.db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'refunds'").get() as { n: number }).n === 1;
  }

  private prepare(db: SqliteDatabase) {
    return {
      byRid: db.prepare(`SELECT ${COLUMNS} FROM ${FROM} WHERE r.rid = ?`) as Statement<[string], RefundRow>,
      get: db.prepare(`SELECT ${COLUMNS} FROM ${FROM} WHERE r.id = ?`) as Statement<[number], RefundRow>,
      byOutRefundNo: db.prepare(`SELECT ${COLUMNS} FROM ${FROM} WHERE r.out_refund_no = ?`) as Statement<[string], RefundRow>,
      ofSale: db.prepare(`SELECT ${COLUMNS} FROM ${FROM} WHERE r.sale_id = ? ORDER BY r.id`) as Statement<[number], RefundRow>,
      unfinished: db.prepare(`SELECT ${COLUMNS} FROM ${FROM} WHERE r.state IN ${UNFINISHED} ORDER BY r.id`) as Statement<[], RefundRow>,
      attention: db.prepare(
        `SELECT ${COLUMNS} FROM ${FROM} WHERE r.state IN ${UNFINISHED} OR r.state IN ('closed', 'change') ORDER BY r.id DESC LIMIT ?`,
      ) as Statement<[number], RefundRow>,
      recent: db.prepare(`SELECT ${COLUMNS} FROM ${FROM} ORDER BY r.id DESC LIMIT ?`) as Statement<[number], RefundRow>,
      createdBetween: db.prepare(`SELECT ${COLUMNS} FROM ${FROM} WHERE r.created_at >= ? AND r.created_at < ? ORDER BY r.id`) as Statement<
        [number, number],
        RefundRow
      >,
      paidAttempt: db.prepare("SELECT id, out_trade_no, amount_fen FROM sales WHERE ref = ? AND state = 'paid' ORDER BY id DESC LIMIT 1") as Statement<
        [string],
        { id: number; out_trade_no: string; amount_fen: number }
      >,
      heldOfSale: db.prepare(`SELECT coalesce(sum(amount_fen), 0) AS fen FROM refunds WHERE sale_id = ? AND state IN (${HOLDING})`) as Statement<
        [number],
        { fen: number }
      >,
      heldOfDay: db.prepare(
        `SELECT coalesce(sum(amount_fen), 0) AS fen FROM refunds WHERE source = 'register' AND created_at >= ? AND created_at < ? AND state IN (${HOLDING})`,
      ) as Statement<[number, number], { fen: number }>,
      insert: db.prepare(
        "INSERT INTO refunds (rid, sale_id, amount_fen, source, state, created_at, updated_at) VALUES (?, ?, ?, ?, 'requested', ?, ?)",
      ) as Statement<[string, number, number, RefundSource, number, number]>,
      setOutRefundNo: db.prepare('UPDATE refunds SET out_refund_no = ? WHERE id = ?') as Statement<[string, number]>,
      write: db.prepare(`UPDATE refunds SET state = @state, refund_id = @refund_id, final_code = @final_code, final_text = @final_text,
          attempts = @attempts, next_attempt_at = @next_attempt_at, updated_at = @updated_at WHERE id = @id AND state = @from`) as Statement<
        [Record<string, unknown>]
      >,
      insertEvent: db.prepare('INSERT INTO refund_events (refund_id, at, kind, detail) VALUES (?, ?, ?, ?)') as Statement<
        [number, number, string, string]
      >,
      events: db.prepare('SELECT id, refund_id, at, kind, detail FROM refund_events WHERE refund_id = ? ORDER BY id') as Statement<
        [number],
        { id: number; refund_id: number; at: number; kind: string; detail: string }
      >,
      counts: db.prepare('SELECT state, count(*) AS n FROM refunds GROUP BY state') as Statement<[], { state: RefundState; n: number }>,
    };
  }

  private get s(): ReturnType<RefundBook['prepare']> {
    if (!this.present) throw new JournalError('NOT_FOUND', `journal ${this.c.path} has no refunds yet (start the daemon once to bring it up to date)`);
    this.stmt ??= this.prepare(this.c.db);
    return this.stmt;
  }

  private row(id: number): RefundRow {
    const row = this.s.get.get(id);
    if (row === undefined) throw new JournalError('NOT_FOUND', `no refund with id ${id} in journal ${this.c.path}`);
    return row;
  }

  /**
   * ONE transaction: the RID's idempotency, the sale's PAID attempt, its refundable balance and the register's
   * day, and, when all allow it, the new refund (state requested, with its out_refund_no) and its event.
   */
  create(input: NewRefund): NewRefundResult {
    if (typeof input?.rid !== 'string' || input.rid === '') throw new TypeError('rid must be a non-empty string');
    if (typeof input.ref !== 'string' || input.ref === '') throw new TypeError('ref must be a non-empty string');
    if (!Number.isSafeInteger(input.amountFen) || input.amountFen <= 0) throw new TypeError('amountFen must be an integer > 0');
    if (input.source !== 'register' && input.source !== 'technician') throw new TypeError('source must be register or technician');
    this.txCreate ??= this.c.db
      .transaction((n: NewRefund): NewRefundResult => {
        const s = this.s;
        const used = s.byRid.get(n.rid);
        if (used) {
          const refund = toRefund(used);
          return refund.ref === n.ref && refund.amountFen === n.amountFen ? { kind: 'existing', refund } : { kind: 'rid_reused', refund };
        }
        const sale = s.paidAttempt.get(n.ref);
        if (!sale) return { kind: 'not_paid' };
        const held = s.heldOfSale.get(sale.id)!.fen;
        if (held + n.amountFen > sale.amount_fen) {
          return { kind: 'over_amount', sale: { id: sale.id, outTradeNo: sale.out_trade_no, amountFen: sale.amount_fen }, leftFen: sale.amount_fen - held };
        }
        if (n.dayCap) {
          const day = s.heldOfDay.get(n.dayCap.startMs, n.dayCap.endMs)!.fen;
          if (day + n.amountFen > n.dayCap.maxFen) return { kind: 'limit', usedFen: day, maxFen: n.dayCap.maxFen };
        }
        const now = this.c.now();
        const id = Number(s.insert.run(n.rid, sale.id, n.amountFen, n.source, now, now).lastInsertRowid);
        const outRefundNo = `${this.c.prefix}R${String(id).padStart(8, '0')}`;
        if (outRefundNo.length > OUT_REFUND_NO_MAX) throw new JournalError('FULL', `journal ${this.c.path}: refund ids no longer fit an out_refund_no`);
        s.setOutRefundNo.run(outRefundNo, id);
        s.insertEvent.run(
          id,
          now,
          'created',
          JSON.stringify({ rid: n.rid, ref: n.ref, out_trade_no: sale.out_trade_no, amount: formatYuan(n.amountFen), out_refund_no: outRefundNo, source: n.source }),
        );
        return { kind: 'created', refund: toRefund(this.row(id)) };
      })
      .immediate.bind(null);
    return this.c.write(`record refund ${input.rid}`, () => this.txCreate!(input));
  }

  /** ONE transaction: a state change along states.ts (guarded by the current state), the patch and the event. */
  transition(id: number, to: RefundState, patch: RefundPatch, event: { kind: string; detail: string }): Refund {
    checkPatch(patch);
    checkEvent(event);
    return this.c.write(`move refund ${id} to ${to}`, () => this.change(id, to, patch, event));
  }

  /** ONE transaction: a change within the same state (counters, REFUND_PENDING), with an optional event. */
  update(id: number, patch: RefundPatch, event?: { kind: string; detail: string }): Refund {
    checkPatch(patch);
    if (event !== undefined) checkEvent(event);
    return this.c.write(`update refund ${id}`, () => this.change(id, null, patch, event));
  }

  addEvent(id: number, kind: string, detail: string): void {
    checkEvent({ kind, detail });
    this.c.write(`add an event to refund ${id}`, () => {
      this.row(id);
      this.s.insertEvent.run(id, this.c.now(), kind, detail);
    });
  }

  private change(id: number, to: RefundState | null, patch: RefundPatch, event?: { kind: string; detail: string }): Refund {
    this.txChange ??= this.c.db
      .transaction((refundId: number, target: RefundState | null, p: RefundPatch, e?: { kind: string; detail: string }): Refund => {
        const row = this.row(refundId);
        if (target !== null && !canRefundTransition(row.state, target)) {
          throw new JournalError('BAD_TRANSITION', `refund ${refundId} (${row.out_refund_no}) cannot go from ${row.state} to ${target}`);
        }
        const next: Record<string, unknown> = { ...row };
        for (const key of Object.keys(PATCH_COLUMNS) as (keyof RefundPatch)[]) {
          if (p[key] !== undefined) next[PATCH_COLUMNS[key]] = p[key];
        }
        const now = this.c.now();
        const { changes } = this.s.write.run({ ...next, state: target ?? row.state, updated_at: now, id: refundId, from: row.state });
        if (changes !== 1) throw new JournalError('BAD_TRANSITION', `refund ${refundId} changed state underneath (was ${row.state})`);
        if (e !== undefined) this.s.insertEvent.run(refundId, now, e.kind, e.detail);
        return toRefund(this.row(refundId));
      })
      .immediate.bind(null);
    return this.txChange(id, to, patch, event);
  }

  get(id: number): Refund | undefined {
    return this.c.read('read a refund', () => {
      const row = this.s.get.get(id);
      return row && toRefund(row);
    });
  }

  byRid(rid: string): Refund | undefined {
    if (!this.present) return undefined;
    return this.c.read('read a refund', () => {
      const row = this.s.byRid.get(rid);
      return row && toRefund(row);
    });
  }

  byOutRefundNo(outRefundNo: string): Refund | undefined {
    if (!this.present) return undefined;
    return this.c.read('read a refund', () => {
      const row = this.s.byOutRefundNo.get(outRefundNo);
      return row && toRefund(row);
    });
  }

  ofSale(saleId: number): Refund[] {
    if (!this.present) return [];
    return this.c.read('read refunds', () => this.s.ofSale.all(saleId).map(toRefund));
  }

  /** Refunds recovery and the background queue must finish or follow, oldest first. */
  unfinished(): Refund[] {
    if (!this.present) return [];
    return this.c.read('list unfinished refunds', () => this.s.unfinished.all().map(toRefund));
  }

  /** Newest first: refunds not yet settled, and those WeChat Pay closed or could not deliver (for `status`). */
  needingAttention(limit: number): Refund[] {
    if (!this.present) return [];
    return this.c.read('list refunds', () => this.s.attention.all(limit).map(toRefund));
  }

  recent(limit: number): Refund[] {
    if (!this.present) return [];
    return this.c.read('list refunds', () => this.s.recent.all(limit).map(toRefund));
  }

  /** Refunds recorded in [startMs, endMs), oldest first: a business day's. */
  createdBetween(startMs: number, endMs: number): Refund[] {
    if (!this.present) return [];
    return this.c.read('list refunds', () => this.s.createdBetween.all(startMs, endMs).map(toRefund));
  }

  events(id: number): RefundEvent[] {
    if (!this.present) return [];
    return this.c.read('read refund events', () =>
      this.s.events.all(id).map((e) => ({ id: e.id, refundId: e.refund_id, at: e.at, kind: e.kind, detail: e.detail })),
    );
  }

  counts(): Record<RefundState, number> {
    const counts = Object.fromEntries(REFUND_STATES.map((state) => [state, 0])) as Record<RefundState, number>;
    if (!this.present) return counts;
    return this.c.read('count refunds', () => {
      for (const { state, n } of this.s.counts.all()) counts[state] = n;
      return counts;
    });
  }
}
