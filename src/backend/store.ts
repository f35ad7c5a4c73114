import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database, { type Database as SqliteDatabase, type Statement } from 'better-sqlite3';
import type { ApiCall } from '../wechatpay/client.js';
import { HEARTBEAT_HISTORY, parseHeartbeatReport, type HeartbeatRecord, type HeartbeatReport } from './heartbeat.js';
import { FILL_MONEY_SQL, bucketPlan, moneyKeyOf, truthSql, CHINA_OFFSET_MS, DAY_MS, HOUR_MS, type MoneyKind } from './store/money.js';

/**
 * The backend's journal (contract §8): the enrolled boxes, their certificates, and every call the backend
 * forwarded (or refused) for each box with its verified outcome.
 *
 * `BackendStore` is what the server and the commands use, asynchronous so that a networked database can take
 * the place of `SqliteBackendStore` (several backend processes behind a load balancer would share one): every
 * method is one change or one read, atomic on its own.
 */

export type BoxRefunds = 'on' | 'off';

export interface BoxPolicy {
  /** Largest micropay total_fee and refund refund_fee, in fen; null: the backend's default. */
  maxAmountFen: number | null;
  /** Whether the box may refund; null: the backend's default. */
  refunds: BoxRefunds | null;
}

export interface BoxRecord extends BoxPolicy {
  deviceId: string;
  /** The serial of its current certificate (lower-case hex); null once revoked. */
  serial: string | null;
  /** Its current certificate's end; null once revoked. */
  notAfter: number | null;
  enrolledAt: number;
  revokedAt: number | null;
  lastSeenAt: number | null;
  calls: number;
  errors: number;
}

export interface CertificateRecord {
  serial: string;
  deviceId: string;
  issuedAt: number;
  notAfter: number;
  /** Revoked by `revoke`, or replaced by a later enrolment of the same box. */
  revokedAt: number | null;
}

/**
 * sent: recorded before the call went upstream, its outcome not in yet (a crash of the backend in between
 * leaves it so: the call may have reached WeChat Pay). refused: stopped by the backend, nothing upstream.
 */
export type CallOutcomeKind = 'sent' | 'success' | 'business' | 'unknown' | 'bill' | 'no_bill' | 'not_ready' | 'refused';

export interface CallRecord {
  id: number;
  deviceId: string;
  call: ApiCall;
  outTradeNo: string | null;
  outRefundNo: string | null;
  outcome: CallOutcomeKind;
  /** err_code (business), failure (unknown) or the refusal code (refused). */
  code: string | null;
  /**
   * What a verified success answer established, for reconciliation (`CALL_STATES`): micropay SUCCESS; orderquery
   * its trade_state; reverse REVERSED, or RECALL when WeChat Pay asks to call again; refund ACCEPTED; refundquery
   * the refund_status of the refund asked about. Null for every other outcome.
   */
  state: string | null;
  /** The request's amount in fen: a micropay's total_fee, a refund's refund_fee; null for the other calls. */
  amountFen: number | null;
  ms: number | null;
  at: number;
  /** WeChat Pay's payment time (time_end) from a verified micropay or orderquery answer saying paid; else null. */
  paidAt: number | null;
}

export interface NewCall {
  deviceId: string;
  call: ApiCall;
  outTradeNo: string | null;
  outRefundNo: string | null;
  /** A micropay's total_fee or a refund's refund_fee. */
  amountFen?: number | null;
  at: number;
}

export interface FinishedCall {
  outcome: Exclude<CallOutcomeKind, 'sent'>;
  code: string | null;
  /** See CallRecord.state. */
  state?: string | null;
  /** See CallRecord.paidAt. */
  paidAt?: number | null;
  ms: number;
}

/** The limits a refund is checked against (contract §8), given by the server from its policy. */
export interface RefundLimits {
  /** The box's business day, [dayFrom, dayTo), in ms. */
  dayFrom: number;
  dayTo: number;
  /** Most fen the box may refund in that day (refunds the backend forwarded, of any source). */
  dayMaxFen: number;
}

/** A refund the box asks for: its order, its number, the refund_fee (amountFen) and the total_fee the box claims. */
export interface NewRefundCall extends NewCall {
  call: 'refund';
  outTradeNo: string;
  outRefundNo: string;
  amountFen: number;
  claimedTotalFeeFen: number;
}

export type RefundRefusal = 'NOT_CHARGED' | 'OVER_AMOUNT' | 'REFUND_LIMIT' | 'BAD_REQUEST';

/**
 * ok: recorded as sent (id for finishCall), with the order's total_fee as the backend charged it (what goes to
 * WeChat Pay, whatever the box claimed); `again` when this out_refund_no was forwarded before (a retry: the same
 * refund, not counted twice). Otherwise the refusal, and nothing is recorded.
 */
export type RefundStart = { ok: true; id: number; totalFeeFen: number; again: boolean } | { ok: false; code: RefundRefusal; text: string };

export type EnrolResult = { ok: true; box: BoxRecord } | { ok: false; problem: string };

export interface BackendStore {
  /**
   * Records a box's new certificate: a new box, a revoked box enrolled again, or a box given a new certificate
   * (its earlier ones are revoked in the same change: one good certificate per box). Refused when the device id
   * is a prefix of another box's, or another's is a prefix of it: a box owns the orders beginning with its id.
   */
  enrol(cert: { deviceId: string; serial: string; notAfter: number; at: number }, policy?: Partial<BoxPolicy>): Promise<EnrolResult>;
  /** Changes an enrolled box's own policy (a field given as null: the backend's default again); false when there is no such box. */
  setPolicy(deviceId: string, policy: Partial<BoxPolicy>): Promise<boolean>;
  /** Revokes every certificate of the box; false when there is no such box. */
  revoke(deviceId: string, at: number): Promise<boolean>;
  box(deviceId: string): Promise<BoxRecord | undefined>;
  boxes(): Promise<BoxRecord[]>;
  certificate(serial: string): Promise<CertificateRecord | undefined>;
  /**
   * A connection's standing in one read (asked on every call): the certificate of `serial` and the box of its
   * device id (undefined when that box is not enrolled); undefined when no such certificate.
   */
  peer(serial: string): Promise<{ certificate: CertificateRecord; box: BoxRecord | undefined } | undefined>;
  /** `peer` of many serials in one read (the open connections' recheck, every second): the ones found, by serial. */
  peers(serials: readonly string[]): Promise<Map<string, { certificate: CertificateRecord; box: BoxRecord | undefined }>>;
  /** Records a call before it goes upstream; returns its id for `finishCall`. Also the box's last seen and call count. */
  startCall(call: NewCall): Promise<number>;
  finishCall(id: number, result: FinishedCall): Promise<void>;
  /**
   * The refund policy of contract §8 and `startCall`, in ONE transaction (two refunds at once cannot both pass a
   * limit): the order must be one the journal shows the backend charged for this box (a micropay or orderquery
   * answered SUCCESS, not reversed), the box's claimed total_fee must be that micropay's amount, the order's
   * refunds (forwarded, not refused, not closed) plus this one at most that amount, and the box's refunds whose
   * first forward falls in [dayFrom, dayTo) plus this one at most dayMaxFen. A retry of an out_refund_no already
   * forwarded (same order, same amount) passes without counting again.
   */
  startRefund(call: NewRefundCall, limits: RefundLimits): Promise<RefundStart>;
  /**
   * Whether the box's journal shows it started the order before `before` (a micropay of it by this box): what
   * a revoked box may still orderquery and reverse (contract §8).
   */
  orderStartedBefore(deviceId: string, outTradeNo: string, before: number): Promise<boolean>;
  /** A call refused by the backend, nothing upstream. */
  refusedCall(call: NewCall, code: string): Promise<void>;
  calls(options?: { deviceId?: string; limit?: number }): Promise<CallRecord[]>;
  /**
   * Everything the journal holds about the orders a day's reconciliation looks at, oldest first: every call about
   * an order that has a call in [from, to) or is among `outTradeNos`, and the refundqueries of their refunds.
   */
  tradeCalls(options: { from: number; to: number; outTradeNos?: readonly string[] }): Promise<CallRecord[]>;
  /**
   * The fleet (contract §11). A box's heartbeat as the backend received it (`at`: the backend's clock): kept as
   * the box's latest, and in its history of the last HEARTBEAT_HISTORY (older ones are dropped from time to time,
   * so a few more may be kept for a while; `heartbeats` never returns more).
   */
  recordHeartbeat(heartbeat: NewHeartbeat): Promise<void>;
  /** Several heartbeats (of any boxes, a box's in the order given) in one transaction: all kept, or none. */
  recordHeartbeats(heartbeats: readonly NewHeartbeat[]): Promise<void>;
  /**
   * A value that changes whenever a certificate is revoked (by `revoke`, or replaced by an enrolment): the
   * server's cheap check, every second, of whether its open connections must be checked one by one again.
   */
  revocationMark(): Promise<string>;
  /** The newest heartbeat of every box that ever sent one. */
  latestHeartbeats(): Promise<HeartbeatRecord[]>;
  /** A box's heartbeats, newest first. */
  heartbeats(deviceId: string, options?: { limit?: number }): Promise<HeartbeatRecord[]>;
  /** The console's people (`scanbox backend admin add`): adds or replaces one; true when it was new. */
  putAdmin(admin: { name: string; passwordHash: string; at: number }): Promise<boolean>;
  /** False when there is no such admin. */
  removeAdmin(name: string): Promise<boolean>;
  admin(name: string): Promise<AdminRecord | undefined>;
  /** What an admin did (logged in, revoked a box, changed a policy, ...), who and when. */
  recordAdminAction(action: NewAdminAction): Promise<void>;
  /** Newest first. */
  adminActions(options?: { limit?: number }): Promise<AdminActionRecord[]>;
  /**
   * The console's money (console/figures.ts), summed by the store: per box and per time bucket, the sales the
   * backend saw paid (a micropay SUCCESS, or an orderquery SUCCESS or REFUND; not given back by a reverse
   * REVERSED or an orderquery REVOKED, CLOSED or PAYERROR; amount: the micropay's total_fee) by the time of
   * their payment, and the refunds WeChat Pay accepted (not later CHANGE or REFUNDCLOSE by a refundquery;
   * amount: the refund_fee) by the time of their acceptance, both in [from, to). A bucket is
   * floor((t + offsetMs) / bucketMs): with offsetMs the zone's UTC offset and bucketMs a day or an hour, a
   * calendar day or hour of a zone without daylight saving (China's). Calls up to a day before `from` are read,
   * so that a sale begun before midnight and paid after is counted. `deviceId`: that box's only.
   */
  moneyBuckets(options: MoneyBucketsOptions): Promise<MoneyBucket[]>;
  /**
   * The same sums as `moneyBuckets`, recounted from the calls themselves by the query the console used before
   * the buckets (schema step 4) existed: slow (it groups every call of the window by order), kept for checks
   * and tests. It reads only calls up to a day before `from`, and counts a refused micropay's amount; the
   * buckets read every call of an order and none refused, and are otherwise the same sums.
   */
  recountMoney(options: MoneyBucketsOptions): Promise<MoneyBucket[]>;
  /**
   * `scanbox backend reconcile`'s result for a day (the backend's own discrepancies, contract §11 problems):
   * replaces what an earlier run of the same day kept.
   */
  recordReconciliation(reconciliation: ReconciliationRecord): Promise<void>;
  /** The kept reconciliations of days >= `fromDay` (YYYYMMDD), oldest day first. */
  reconciliations(options: { fromDay: string }): Promise<ReconciliationRecord[]>;
  /** The reverse, refund and refundquery calls made since `from`, oldest first: what the console's problems read. */
  attentionCalls(options: { from: number }): Promise<CallRecord[]>;
  close(): Promise<void>;
}

/**
 * What `moneyBuckets` sums: [from, to) on whole hours, by the hour (bucketMs an hour, offsetMs whole hours) or by
 * China's calendar day (bucketMs a day, offsetMs China's 8 hours, from and to China midnights): the buckets the
 * store keeps. `total`: the chain's sums, one row per bucket with deviceId '*'.
 */
export interface MoneyBucketsOptions {
  from: number;
  to: number;
  bucketMs: number;
  offsetMs: number;
  deviceId?: string;
  total?: boolean;
}

/** A day's backend reconciliation as kept for the console. */
export interface ReconciliationRecord {
  /** The bill's day, YYYYMMDD. */
  day: string;
  /** When it ran (the backend's clock). */
  at: number;
  matched: number;
  discrepancies: ReadonlyArray<{ kind: string; box: string | null; out_trade_no: string; out_refund_no?: string; what: string }>;
}

export interface NewHeartbeat {
  deviceId: string;
  /** When the backend received it (its clock). */
  at: number;
  report: HeartbeatReport;
}

export interface MoneyBucket {
  deviceId: string;
  /** floor((t + offsetMs) / bucketMs). */
  bucket: number;
  paidCount: number;
  paidFen: number;
  refundCount: number;
  refundFen: number;
}

export interface AdminRecord {
  name: string;
  /** `scrypt$N$r$p$salt$hash` (console/password.ts); never the password. */
  passwordHash: string;
  createdAt: number;
}

export interface NewAdminAction {
  /** The admin's name; for a refused login, the name that was tried. */
  admin: string;
  /** login, login_refused, logout, revoke, policy, admin_add, admin_remove. */
  action: string;
  /** The box acted on, if any. */
  deviceId: string | null;
  detail: string;
  at: number;
}

export interface AdminActionRecord extends NewAdminAction {
  id: number;
}

export class StoreError extends Error {
  constructor(
    readonly code: 'IO' | 'CORRUPT' | 'NEWER',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'StoreError';
  }
}

/** One step per PRAGMA user_version; a shipped step is never edited. */
const MIGRATIONS: ReadonlyArray<(db: SqliteDatabase) => void> = [
  (db) => {
    db.exec(`
      CREATE TABLE boxes (
        device_id      TEXT PRIMARY KEY,
        enrolled_at    INTEGER NOT NULL,
        revoked_at     INTEGER,
        last_seen_at   INTEGER,
        calls          INTEGER NOT NULL DEFAULT 0,
        errors         INTEGER NOT NULL DEFAULT 0,
        max_amount_fen INTEGER CHECK (max_amount_fen IS NULL OR max_amount_fen > 0),
        refunds        TEXT CHECK (refunds IS NULL OR refunds IN ('on', 'off'))
      ) STRICT;

      CREATE TABLE certificates (
        serial     TEXT PRIMARY KEY,
        device_id  TEXT NOT NULL REFERENCES boxes (device_id),
        issued_at  INTEGER NOT NULL,
        not_after  INTEGER NOT NULL,
        revoked_at INTEGER
      ) STRICT;
      CREATE INDEX certificates_device ON certificates (device_id);
      CREATE INDEX certificates_revoked ON certificates (revoked_at) WHERE revoked_at IS NOT NULL;

      CREATE TABLE calls (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        device_id     TEXT NOT NULL,
        call          TEXT NOT NULL,
        out_trade_no  TEXT,
        out_refund_no TEXT,
        outcome       TEXT NOT NULL CHECK (outcome IN ('sent', 'success', 'business', 'unknown', 'bill', 'no_bill', 'not_ready', 'refused')),
        code          TEXT,
        state         TEXT,
        amount_fen    INTEGER CHECK (amount_fen IS NULL OR amount_fen > 0),
        ms            INTEGER,
        at            INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX calls_device ON calls (device_id, id);
      CREATE INDEX calls_trade ON calls (out_trade_no) WHERE out_trade_no IS NOT NULL;
      CREATE INDEX calls_refund ON calls (out_refund_no) WHERE out_refund_no IS NOT NULL;
      CREATE INDEX calls_at ON calls (at);
    `);
  },
  // 2: the refund policy reads a box's refunds of a day (startRefund); reconciliation dates a sale by
  // WeChat Pay's payment time (paid_at, from time_end), not by the micropay's start.
  (db) => {
    db.exec(`
      CREATE INDEX calls_device_call_at ON calls (device_id, call, at);
      ALTER TABLE calls ADD COLUMN paid_at INTEGER;
    `);
  },
  // 3: the fleet (contract §11): heartbeats, the console's admins and what they did.
  (db) => {
    db.exec(`
      CREATE TABLE heartbeats (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        device_id TEXT NOT NULL,
        at        INTEGER NOT NULL,
        report    TEXT NOT NULL
      ) STRICT;
      CREATE INDEX heartbeats_device ON heartbeats (device_id, id);

      CREATE TABLE admins (
        name          TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        created_at    INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE admin_actions (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        admin     TEXT NOT NULL,
        action    TEXT NOT NULL,
        device_id TEXT,
        detail    TEXT NOT NULL,
        at        INTEGER NOT NULL
      ) STRICT;
    `);
  },
  // 4: the console's money by box and hour and by box and China day, kept as calls finish (store/money.ts),
  // filled here from the calls already journalled; and the backend's own reconciliations, for the problems page.
  (db) => {
    db.exec(`
      CREATE TABLE money_items (
        kind       TEXT NOT NULL CHECK (kind IN ('paid', 'refund')),
        no         TEXT NOT NULL,
        device_id  TEXT NOT NULL,
        at         INTEGER NOT NULL,
        amount_fen INTEGER NOT NULL,
        PRIMARY KEY (kind, no)
      ) STRICT, WITHOUT ROWID;

      CREATE TABLE money_hours (
        device_id    TEXT NOT NULL,
        hour         INTEGER NOT NULL,
        paid_count   INTEGER NOT NULL,
        paid_fen     INTEGER NOT NULL,
        refund_count INTEGER NOT NULL,
        refund_fen   INTEGER NOT NULL,
        PRIMARY KEY (device_id, hour)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX money_hours_hour ON money_hours (hour);

      CREATE TABLE money_days (
        device_id    TEXT NOT NULL,
        day          INTEGER NOT NULL,
        paid_count   INTEGER NOT NULL,
        paid_fen     INTEGER NOT NULL,
        refund_count INTEGER NOT NULL,
        refund_fen   INTEGER NOT NULL,
        PRIMARY KEY (device_id, day)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX money_days_day ON money_days (day);

      -- The problems' calls (attentionCalls) of the last 30 days, without walking every call of them.
      CREATE INDEX calls_attention ON calls (at) WHERE call IN ('reverse', 'refund', 'refundquery');

      CREATE TABLE reconciliations (
        day           TEXT PRIMARY KEY,
        at            INTEGER NOT NULL,
        matched       INTEGER NOT NULL,
        discrepancies TEXT NOT NULL
      ) STRICT;
    `);
    db.exec(FILL_MONEY_SQL);
  },
];

/** Outcomes of a forwarded refund that may have moved money (a refused or WeChat-refused one did not). */
const HOLDING_REFUND = `outcome IN ('sent', 'success', 'unknown')
  AND NOT EXISTS (SELECT 1 FROM calls q WHERE q.call = 'refundquery' AND q.out_refund_no = r.out_refund_no AND q.state = 'REFUNDCLOSE')`;

/** A box row as both stores read it (with its current certificate joined). */
export interface BoxRow {
  device_id: string;
  enrolled_at: number;
  revoked_at: number | null;
  last_seen_at: number | null;
  calls: number;
  errors: number;
  max_amount_fen: number | null;
  refunds: BoxRefunds | null;
  serial: string | null;
  not_after: number | null;
}

/** A call row as both stores read it. */
export interface CallRow {
  id: number;
  device_id: string;
  call: ApiCall;
  out_trade_no: string | null;
  out_refund_no: string | null;
  outcome: CallOutcomeKind;
  code: string | null;
  state: string | null;
  amount_fen: number | null;
  paid_at: number | null;
  ms: number | null;
  at: number;
}

const BOX_COLUMNS = `b.device_id, b.enrolled_at, b.revoked_at, b.last_seen_at, b.calls, b.errors, b.max_amount_fen, b.refunds,
  c.serial, c.not_after`;
// The current certificate: the newest one that is not revoked.
const BOX_FROM = `boxes b LEFT JOIN certificates c ON c.serial = (
  SELECT serial FROM certificates WHERE device_id = b.device_id AND revoked_at IS NULL ORDER BY issued_at DESC, rowid DESC LIMIT 1)`;

export function toBox(row: BoxRow): BoxRecord {
  return {
    deviceId: row.device_id,
    serial: row.serial,
    notAfter: row.not_after,
    enrolledAt: row.enrolled_at,
    revokedAt: row.revoked_at,
    lastSeenAt: row.last_seen_at,
    calls: row.calls,
    errors: row.errors,
    maxAmountFen: row.max_amount_fen,
    refunds: row.refunds,
  };
}

export function toCall(row: CallRow): CallRecord {
  return {
    id: row.id,
    deviceId: row.device_id,
    call: row.call,
    outTradeNo: row.out_trade_no,
    outRefundNo: row.out_refund_no,
    outcome: row.outcome,
    code: row.code,
    state: row.state,
    amountFen: row.amount_fen,
    paidAt: row.paid_at ?? null,
    ms: row.ms,
    at: row.at,
  };
}

/** A box's heartbeat history is pruned at one heartbeat in this many (both stores). */
export const HEARTBEAT_PRUNE_EVERY = 32;

export interface HeartbeatRow {
  device_id: string;
  at: number;
  report: string;
}

/** A stored report that no longer parses (written by another version) is left out rather than shown wrong. */
export function toHeartbeat(row: HeartbeatRow): HeartbeatRecord[] {
  let json: unknown;
  try {
    json = JSON.parse(row.report);
  } catch {
    return [];
  }
  const parsed = parseHeartbeatReport(json);
  return parsed.ok ? [{ deviceId: row.device_id, at: row.at, report: parsed.report }] : [];
}

/** Buckets of every box summed into the chain's (deviceId '*'), in bucket order; as they are when not asked. */
export function totalOf(rows: MoneyBucket[], total: boolean): MoneyBucket[] {
  if (!total) return rows;
  const by = new Map<number, MoneyBucket>();
  for (const r of rows) {
    const t = by.get(r.bucket) ?? { deviceId: '*', bucket: r.bucket, paidCount: 0, paidFen: 0, refundCount: 0, refundFen: 0 };
    t.paidCount += r.paidCount;
    t.paidFen += r.paidFen;
    t.refundCount += r.refundCount;
    t.refundFen += r.refundFen;
    by.set(r.bucket, t);
  }
  return [...by.values()].sort((a, b) => a.bucket - b.bucket);
}

export interface ReconciliationRow {
  day: string;
  at: number;
  matched: number;
  discrepancies: string;
}

export function toReconciliation(row: ReconciliationRow): ReconciliationRecord[] {
  try {
    const list = JSON.parse(row.discrepancies) as unknown;
    if (!Array.isArray(list)) return [];
    return [{ day: row.day, at: row.at, matched: row.matched, discrepancies: list as ReconciliationRecord['discrepancies'] }];
  } catch {
    return [];
  }
}

/** Outcomes counted as a box's errors: what left the box without a verified answer, and what was refused. */
const ERROR_OUTCOMES: ReadonlySet<CallOutcomeKind> = new Set(['unknown', 'refused']);

/**
 * The store in one SQLite file, like the box's journal: WAL and synchronous=FULL (a forwarded call that was
 * recorded survives a power cut), one transaction per change. Other processes (`scanbox backend revoke`) write
 * the same file; SQLite's locking and the busy timeout keep them apart.
 */
export class SqliteBackendStore implements BackendStore {
  readonly path: string;
  private readonly db: SqliteDatabase;

  static open(path: string): SqliteBackendStore {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    let db: SqliteDatabase;
    try {
      db = new Database(path);
    } catch (error) {
      throw new StoreError('IO', `cannot open the backend journal ${path}: ${(error as Error).message}`, { cause: error });
    }
    try {
      db.pragma('busy_timeout = 5000');
      const check = db.pragma('quick_check', { simple: true });
      if (check !== 'ok') throw new StoreError('CORRUPT', `backend journal ${path} fails quick_check: ${String(check)}`);
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (mode !== 'wal') throw new StoreError('IO', `backend journal ${path} cannot use WAL mode (got ${String(mode)})`);
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version > MIGRATIONS.length) {
        throw new StoreError('NEWER', `backend journal ${path} is schema ${version}, newer than this scanbox (${MIGRATIONS.length})`);
      }
      for (let step = version; step < MIGRATIONS.length; step++) {
        db.transaction(() => {
          MIGRATIONS[step]!(db);
          db.pragma(`user_version = ${step + 1}`);
        }).immediate();
      }
      return new SqliteBackendStore(path, db);
    } catch (error) {
      db.close();
      if (error instanceof StoreError) throw error;
      throw new StoreError('IO', `backend journal ${path}: ${(error as Error).message}`, { cause: error });
    }
  }

  private constructor(path: string, db: SqliteDatabase) {
    this.path = path;
    this.db = db;
  }

  /** Statements are prepared once and kept (preparing one costs more than running most of them). */
  private readonly statements = new Map<string, Statement>();

  private prepared(sql: string): Statement {
    let statement = this.statements.get(sql);
    if (statement === undefined) this.statements.set(sql, (statement = this.db.prepare(sql)));
    return statement;
  }

  enrol(cert: { deviceId: string; serial: string; notAfter: number; at: number }, policy: Partial<BoxPolicy> = {}): Promise<EnrolResult> {
    return this.run(() =>
      this.db.transaction((): EnrolResult => {
        const clash = this.db
          .prepare(
            `SELECT device_id FROM boxes WHERE device_id <> ? AND (substr(device_id, 1, length(?)) = ? OR substr(?, 1, length(device_id)) = device_id) LIMIT 1`,
          )
          .get(cert.deviceId, cert.deviceId, cert.deviceId, cert.deviceId) as { device_id: string } | undefined;
        if (clash) {
          return {
            ok: false,
            problem: `device id ${cert.deviceId} and the enrolled box ${clash.device_id} begin alike: each box owns the out_trade_no beginning with its id, so neither may be a prefix of the other`,
          };
        }
        const existing = this.prepared('SELECT device_id FROM boxes WHERE device_id = ?').get(cert.deviceId);
        if (existing === undefined) {
          this.db
            .prepare('INSERT INTO boxes (device_id, enrolled_at, max_amount_fen, refunds) VALUES (?, ?, ?, ?)')
            .run(cert.deviceId, cert.at, policy.maxAmountFen ?? null, policy.refunds ?? null);
        } else {
          this.prepared('UPDATE boxes SET enrolled_at = ?, revoked_at = NULL WHERE device_id = ?').run(cert.at, cert.deviceId);
          if (policy.maxAmountFen !== undefined) this.prepared('UPDATE boxes SET max_amount_fen = ? WHERE device_id = ?').run(policy.maxAmountFen, cert.deviceId);
          if (policy.refunds !== undefined) this.prepared('UPDATE boxes SET refunds = ? WHERE device_id = ?').run(policy.refunds, cert.deviceId);
          this.prepared('UPDATE certificates SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL').run(cert.at, cert.deviceId);
        }
        this.db
          .prepare('INSERT INTO certificates (serial, device_id, issued_at, not_after) VALUES (?, ?, ?, ?)')
          .run(cert.serial, cert.deviceId, cert.at, cert.notAfter);
        return { ok: true, box: this.boxSync(cert.deviceId)! };
      }).immediate(),
    );
  }

  setPolicy(deviceId: string, policy: Partial<BoxPolicy>): Promise<boolean> {
    return this.run(() =>
      this.db.transaction((): boolean => {
        if (this.prepared('SELECT 1 FROM boxes WHERE device_id = ?').get(deviceId) === undefined) return false;
        if (policy.maxAmountFen !== undefined) this.prepared('UPDATE boxes SET max_amount_fen = ? WHERE device_id = ?').run(policy.maxAmountFen, deviceId);
        if (policy.refunds !== undefined) this.prepared('UPDATE boxes SET refunds = ? WHERE device_id = ?').run(policy.refunds, deviceId);
        return true;
      }).immediate(),
    );
  }

  revoke(deviceId: string, at: number): Promise<boolean> {
    return this.run(() =>
      this.db.transaction((): boolean => {
        const box = this.prepared('SELECT revoked_at FROM boxes WHERE device_id = ?').get(deviceId) as { revoked_at: number | null } | undefined;
        if (box === undefined) return false;
        if (box.revoked_at === null) this.prepared('UPDATE boxes SET revoked_at = ? WHERE device_id = ?').run(at, deviceId);
        this.prepared('UPDATE certificates SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL').run(at, deviceId);
        return true;
      }).immediate(),
    );
  }

  box(deviceId: string): Promise<BoxRecord | undefined> {
    return this.run(() => this.boxSync(deviceId));
  }

  private boxSync(deviceId: string): BoxRecord | undefined {
    const row = this.prepared(`SELECT ${BOX_COLUMNS} FROM ${BOX_FROM} WHERE b.device_id = ?`).get(deviceId) as BoxRow | undefined;
    return row ? toBox(row) : undefined;
  }

  boxes(): Promise<BoxRecord[]> {
    return this.run(() => (this.prepared(`SELECT ${BOX_COLUMNS} FROM ${BOX_FROM} ORDER BY b.device_id`).all() as BoxRow[]).map(toBox));
  }

  peer(serial: string): Promise<{ certificate: CertificateRecord; box: BoxRecord | undefined } | undefined> {
    return this.run(() => {
      const row = this.prepared('SELECT serial, device_id, issued_at, not_after, revoked_at FROM certificates WHERE serial = ?').get(serial) as
        | { serial: string; device_id: string; issued_at: number; not_after: number; revoked_at: number | null }
        | undefined;
      if (row === undefined) return undefined;
      return { certificate: { serial: row.serial, deviceId: row.device_id, issuedAt: row.issued_at, notAfter: row.not_after, revokedAt: row.revoked_at }, box: this.boxSync(row.device_id) };
    });
  }

  async peers(serials: readonly string[]): Promise<Map<string, { certificate: CertificateRecord; box: BoxRecord | undefined }>> {
    // In this process's own file: no round trip to save, one read each.
    const found = new Map<string, { certificate: CertificateRecord; box: BoxRecord | undefined }>();
    for (const serial of new Set(serials)) {
      const peer = await this.peer(serial);
      if (peer !== undefined) found.set(serial, peer);
    }
    return found;
  }

  certificate(serial: string): Promise<CertificateRecord | undefined> {
    return this.run(() => {
      const row = this.prepared('SELECT serial, device_id, issued_at, not_after, revoked_at FROM certificates WHERE serial = ?').get(serial) as
        | { serial: string; device_id: string; issued_at: number; not_after: number; revoked_at: number | null }
        | undefined;
      return row ? { serial: row.serial, deviceId: row.device_id, issuedAt: row.issued_at, notAfter: row.not_after, revokedAt: row.revoked_at } : undefined;
    });
  }

  startCall(call: NewCall): Promise<number> {
    return this.run(() =>
      this.db.transaction((): number => {
        const info = this.db
          .prepare(`INSERT INTO calls (device_id, call, out_trade_no, out_refund_no, amount_fen, outcome, at) VALUES (?, ?, ?, ?, ?, 'sent', ?)`)
          .run(call.deviceId, call.call, call.outTradeNo, call.outRefundNo, call.amountFen ?? null, call.at);
        this.prepared('UPDATE boxes SET calls = calls + 1, last_seen_at = ? WHERE device_id = ?').run(call.at, call.deviceId);
        return Number(info.lastInsertRowid);
      }).immediate(),
    );
  }

  finishCall(id: number, result: FinishedCall): Promise<void> {
    return this.run(() =>
      this.db.transaction(() => {
        const row = this.prepared("SELECT device_id, call, out_trade_no, out_refund_no FROM calls WHERE id = ? AND outcome = 'sent'").get(id) as
          | { device_id: string; call: string; out_trade_no: string | null; out_refund_no: string | null }
          | undefined;
        if (row === undefined) throw new Error(`call ${id} is not a call under way`);
        this.db
          .prepare('UPDATE calls SET outcome = ?, code = ?, state = ?, paid_at = ?, ms = ? WHERE id = ?')
          .run(result.outcome, result.code, result.state ?? null, result.paidAt ?? null, Math.round(result.ms), id);
        if (ERROR_OUTCOMES.has(result.outcome)) this.prepared('UPDATE boxes SET errors = errors + 1 WHERE device_id = ?').run(row.device_id);
        const key = moneyKeyOf(row.call, row.out_trade_no, row.out_refund_no);
        if (key !== null) this.settleMoney(key.kind, key.no);
      }).immediate(),
    );
  }

  startRefund(call: NewRefundCall, limits: RefundLimits): Promise<RefundStart> {
    return this.run(() =>
      this.db.transaction((): RefundStart => {
        const earlier = this.db
          .prepare(`SELECT out_trade_no, amount_fen, device_id FROM calls WHERE call = 'refund' AND out_refund_no = ? AND outcome <> 'refused' ORDER BY id LIMIT 1`)
          .get(call.outRefundNo) as { out_trade_no: string; amount_fen: number | null; device_id: string } | undefined;
        if (earlier !== undefined && (earlier.out_trade_no !== call.outTradeNo || earlier.amount_fen !== call.amountFen || earlier.device_id !== call.deviceId)) {
          return { ok: false, code: 'BAD_REQUEST', text: `out_refund_no ${call.outRefundNo} was used before for another order or amount` };
        }
        const sale = this.db
          .prepare(`SELECT amount_fen FROM calls WHERE device_id = ? AND call = 'micropay' AND out_trade_no = ? AND amount_fen IS NOT NULL ORDER BY id LIMIT 1`)
          .get(call.deviceId, call.outTradeNo) as { amount_fen: number } | undefined;
        const paid =
          sale !== undefined &&
          this.db
            .prepare(
              `SELECT 1 FROM calls WHERE device_id = ? AND out_trade_no = ?
                 AND ((call = 'micropay' AND state = 'SUCCESS') OR (call = 'orderquery' AND state IN ('SUCCESS', 'REFUND'))) LIMIT 1`,
            )
            .get(call.deviceId, call.outTradeNo) !== undefined &&
          this.db
            .prepare(
              `SELECT 1 FROM calls WHERE out_trade_no = ? AND ((call = 'reverse' AND state = 'REVERSED') OR (call = 'orderquery' AND state IN ('REVOKED', 'CLOSED'))) LIMIT 1`,
            )
            .get(call.outTradeNo) === undefined;
        if (!paid || sale === undefined) {
          return { ok: false, code: 'NOT_CHARGED', text: `the backend's journal shows no paid order ${call.outTradeNo} of this box` };
        }
        const totalFeeFen = sale.amount_fen;
        if (call.claimedTotalFeeFen !== totalFeeFen) {
          return { ok: false, code: 'BAD_REQUEST', text: `totalFee ${call.claimedTotalFeeFen} is not the order's amount as the backend charged it` };
        }
        if (earlier === undefined) {
          const held = this.db
            .prepare(
              `SELECT coalesce(sum(fen), 0) AS fen FROM (
                 SELECT max(amount_fen) AS fen FROM calls r WHERE call = 'refund' AND out_trade_no = ? AND ${HOLDING_REFUND} GROUP BY out_refund_no)`,
            )
            .get(call.outTradeNo) as { fen: number };
          if (held.fen + call.amountFen > totalFeeFen) {
            return { ok: false, code: 'OVER_AMOUNT', text: `refunds of ${call.outTradeNo} would pass its amount: ${totalFeeFen - held.fen} fen left` };
          }
          const day = this.db
            .prepare(
              `SELECT coalesce(sum(fen), 0) AS fen FROM (
                 SELECT max(amount_fen) AS fen, min(at) AS first FROM calls r WHERE device_id = ? AND call = 'refund' AND ${HOLDING_REFUND}
                   AND at >= ? - 86400000 GROUP BY out_refund_no) WHERE first >= ? AND first < ?`,
            )
            .get(call.deviceId, limits.dayFrom, limits.dayFrom, limits.dayTo) as { fen: number };
          if (day.fen + call.amountFen > limits.dayMaxFen) {
            return { ok: false, code: 'REFUND_LIMIT', text: `the box's refunds today would pass ${limits.dayMaxFen} fen (${day.fen} fen refunded)` };
          }
        }
        const info = this.db
          .prepare(`INSERT INTO calls (device_id, call, out_trade_no, out_refund_no, amount_fen, outcome, at) VALUES (?, 'refund', ?, ?, ?, 'sent', ?)`)
          .run(call.deviceId, call.outTradeNo, call.outRefundNo, call.amountFen, call.at);
        this.prepared('UPDATE boxes SET calls = calls + 1, last_seen_at = ? WHERE device_id = ?').run(call.at, call.deviceId);
        return { ok: true, id: Number(info.lastInsertRowid), totalFeeFen, again: earlier !== undefined };
      }).immediate(),
    );
  }

  orderStartedBefore(deviceId: string, outTradeNo: string, before: number): Promise<boolean> {
    return this.run(
      () =>
        this.db
          .prepare(`SELECT 1 FROM calls WHERE device_id = ? AND call = 'micropay' AND out_trade_no = ? AND outcome <> 'refused' AND at < ? LIMIT 1`)
          .get(deviceId, outTradeNo, before) !== undefined,
    );
  }

  refusedCall(call: NewCall, code: string): Promise<void> {
    return this.run(() =>
      this.db.transaction(() => {
        this.db
          .prepare(`INSERT INTO calls (device_id, call, out_trade_no, out_refund_no, amount_fen, outcome, code, at) VALUES (?, ?, ?, ?, ?, 'refused', ?, ?)`)
          .run(call.deviceId, call.call, call.outTradeNo, call.outRefundNo, call.amountFen ?? null, code, call.at);
        this.db
          .prepare('UPDATE boxes SET calls = calls + 1, errors = errors + 1, last_seen_at = ? WHERE device_id = ?')
          .run(call.at, call.deviceId);
      }).immediate(),
    );
  }

  calls(options: { deviceId?: string; limit?: number } = {}): Promise<CallRecord[]> {
    const limit = options.limit ?? 1000;
    return this.run(() => {
      const rows =
        options.deviceId === undefined
          ? this.prepared('SELECT * FROM calls ORDER BY id DESC LIMIT ?').all(limit)
          : this.prepared('SELECT * FROM calls WHERE device_id = ? ORDER BY id DESC LIMIT ?').all(options.deviceId, limit);
      return (rows as CallRow[]).map(toCall).reverse();
    });
  }

  tradeCalls(options: { from: number; to: number; outTradeNos?: readonly string[] }): Promise<CallRecord[]> {
    return this.run(() => {
      const rows = this.db
        .prepare(
          `WITH trades AS (
             SELECT out_trade_no FROM calls WHERE at >= ? AND at < ? AND out_trade_no IS NOT NULL
             UNION SELECT value FROM json_each(?)
           ),
           refunds AS (SELECT out_refund_no FROM calls WHERE out_trade_no IN trades AND out_refund_no IS NOT NULL)
           SELECT * FROM calls WHERE out_trade_no IN trades OR (out_trade_no IS NULL AND out_refund_no IN refunds) ORDER BY id`,
        )
        .all(options.from, options.to, JSON.stringify(options.outTradeNos ?? []));
      return (rows as CallRow[]).map(toCall);
    });
  }

  recordHeartbeat(heartbeat: NewHeartbeat): Promise<void> {
    return this.recordHeartbeats([heartbeat]);
  }

  recordHeartbeats(heartbeats: readonly NewHeartbeat[]): Promise<void> {
    if (heartbeats.length === 0) return Promise.resolve();
    return this.run(() =>
      this.db.transaction(() => {
        const insert = this.prepared('INSERT INTO heartbeats (device_id, at, report) VALUES (?, ?, ?)');
        for (const heartbeat of heartbeats) {
          const info = insert.run(heartbeat.deviceId, heartbeat.at, JSON.stringify(heartbeat.report));
          // Pruning walks HEARTBEAT_HISTORY index entries: done at one insert in HEARTBEAT_PRUNE_EVERY, so a box keeps
          // at most that many more than HEARTBEAT_HISTORY, and heartbeats() never shows more than HEARTBEAT_HISTORY.
          if (Number(info.lastInsertRowid) % HEARTBEAT_PRUNE_EVERY !== 0) continue;
          const oldest = this.db
            .prepare('SELECT id FROM heartbeats WHERE device_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?')
            .get(heartbeat.deviceId, HEARTBEAT_HISTORY) as { id: number } | undefined;
          if (oldest !== undefined) this.prepared('DELETE FROM heartbeats WHERE device_id = ? AND id <= ?').run(heartbeat.deviceId, oldest.id);
        }
      }).immediate(),
    );
  }

  revocationMark(): Promise<string> {
    return this.run(() => {
      const row = this.prepared('SELECT count(*) AS n, max(revoked_at) AS m FROM certificates WHERE revoked_at IS NOT NULL').get() as { n: number; m: number | null };
      return `${row.n}:${row.m ?? ''}`;
    });
  }

  latestHeartbeats(): Promise<HeartbeatRecord[]> {
    return this.run(() =>
      (
        this.db
          // Two index seeks per box (the next device id, then its newest heartbeat), not a walk of every box's history.
          .prepare(
            `WITH RECURSIVE d(id) AS (
               SELECT min(device_id) FROM heartbeats
               UNION ALL SELECT (SELECT min(device_id) FROM heartbeats WHERE device_id > d.id) FROM d WHERE d.id IS NOT NULL
             )
             SELECT h.device_id, h.at, h.report FROM d JOIN heartbeats h ON h.id = (SELECT max(id) FROM heartbeats WHERE device_id = d.id)
             ORDER BY h.device_id`,
          )
          .all() as HeartbeatRow[]
      ).flatMap(toHeartbeat),
    );
  }

  heartbeats(deviceId: string, options: { limit?: number } = {}): Promise<HeartbeatRecord[]> {
    return this.run(() =>
      (
        this.prepared('SELECT device_id, at, report FROM heartbeats WHERE device_id = ? ORDER BY id DESC LIMIT ?').all(deviceId, Math.min(options.limit ?? HEARTBEAT_HISTORY, HEARTBEAT_HISTORY)) as HeartbeatRow[]
      ).flatMap(toHeartbeat),
    );
  }

  putAdmin(admin: { name: string; passwordHash: string; at: number }): Promise<boolean> {
    return this.run(() =>
      this.db.transaction((): boolean => {
        const known = this.prepared('SELECT 1 FROM admins WHERE name = ?').get(admin.name) !== undefined;
        if (known) this.prepared('UPDATE admins SET password_hash = ? WHERE name = ?').run(admin.passwordHash, admin.name);
        else this.prepared('INSERT INTO admins (name, password_hash, created_at) VALUES (?, ?, ?)').run(admin.name, admin.passwordHash, admin.at);
        return !known;
      }).immediate(),
    );
  }

  removeAdmin(name: string): Promise<boolean> {
    return this.run(() => this.prepared('DELETE FROM admins WHERE name = ?').run(name).changes === 1);
  }

  admin(name: string): Promise<AdminRecord | undefined> {
    return this.run(() => {
      const row = this.prepared('SELECT name, password_hash, created_at FROM admins WHERE name = ?').get(name) as
        | { name: string; password_hash: string; created_at: number }
        | undefined;
      return row ? { name: row.name, passwordHash: row.password_hash, createdAt: row.created_at } : undefined;
    });
  }

  recordAdminAction(action: NewAdminAction): Promise<void> {
    return this.run(() => {
      this.db
        .prepare('INSERT INTO admin_actions (admin, action, device_id, detail, at) VALUES (?, ?, ?, ?, ?)')
        .run(action.admin, action.action, action.deviceId, action.detail, action.at);
    });
  }

  adminActions(options: { limit?: number } = {}): Promise<AdminActionRecord[]> {
    return this.run(() =>
      (
        this.prepared('SELECT id, admin, action, device_id, detail, at FROM admin_actions ORDER BY id DESC LIMIT ?').all(options.limit ?? 100) as {
          id: number;
          admin: string;
          action: string;
          device_id: string | null;
          detail: string;
          at: number;
        }[]
      ).map((r) => ({ id: r.id, admin: r.admin, action: r.action, deviceId: r.device_id, detail: r.detail, at: r.at })),
    );
  }

  /**
   * An order's or a refund's item worked out again from its calls and, when it changed, moved in the sums
   * (store/money.ts); inside the caller's transaction.
   */
  private settleMoney(kind: MoneyKind, no: string): void {
    const truth = this.db
      .prepare(kind === 'paid' ? truthSql('paid', 'out_trade_no = @no', '') : truthSql('refund', '', 'out_refund_no = @no'))
      .get({ no }) as { device_id: string; at: number; amount: number } | undefined;
    const was = this.prepared('SELECT device_id, at, amount_fen FROM money_items WHERE kind = ? AND no = ?').get(kind, no) as
      | { device_id: string; at: number; amount_fen: number }
      | undefined;
    if (truth !== undefined && was !== undefined && truth.device_id === was.device_id && truth.at === was.at && truth.amount === was.amount_fen) return;
    const move = (deviceId: string, at: number, count: number, fen: number): void => {
      const values = kind === 'paid' ? [count, fen, 0, 0] : [0, 0, count, fen];
      for (const [table, column, unit] of [
        ['money_hours', 'hour', Math.floor(at / HOUR_MS)],
        ['money_days', 'day', Math.floor((at + CHINA_OFFSET_MS) / DAY_MS)],
      ] as const) {
        this.db
          .prepare(
            `INSERT INTO ${table} (device_id, ${column}, paid_count, paid_fen, refund_count, refund_fen) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (device_id, ${column}) DO UPDATE SET paid_count = paid_count + excluded.paid_count, paid_fen = paid_fen + excluded.paid_fen,
               refund_count = refund_count + excluded.refund_count, refund_fen = refund_fen + excluded.refund_fen`,
          )
          .run(deviceId, unit, ...values);
      }
    };
    if (was !== undefined) {
      move(was.device_id, was.at, -1, -was.amount_fen);
      this.prepared('DELETE FROM money_items WHERE kind = ? AND no = ?').run(kind, no);
    }
    if (truth !== undefined) {
      move(truth.device_id, truth.at, 1, truth.amount);
      this.prepared('INSERT INTO money_items (kind, no, device_id, at, amount_fen) VALUES (?, ?, ?, ?, ?)').run(kind, no, truth.device_id, truth.at, truth.amount);
    }
  }

  moneyBuckets(options: MoneyBucketsOptions): Promise<MoneyBucket[]> {
    let plan: ReturnType<typeof bucketPlan>;
    try {
      plan = bucketPlan(options);
    } catch (error) {
      return Promise.reject(error as Error);
    }
    const device = options.total ? "'*'" : 'device_id';
    return this.run(() => {
      const rows = this.db
        .prepare(
          `SELECT ${device} AS device_id, ${plan.column} AS unit, sum(paid_count) AS paid_count, sum(paid_fen) AS paid_fen,
             sum(refund_count) AS refund_count, sum(refund_fen) AS refund_fen
           FROM ${plan.table} WHERE ${plan.column} >= @lo AND ${plan.column} < @hi AND (@device IS NULL OR device_id = @device)
           GROUP BY 1, 2 HAVING sum(paid_count) <> 0 OR sum(refund_count) <> 0 ORDER BY 1, 2`,
        )
        .all({ lo: plan.lo, hi: plan.hi, device: options.deviceId ?? null }) as {
        device_id: string;
        unit: number;
        paid_count: number;
        paid_fen: number;
        refund_count: number;
        refund_fen: number;
      }[];
      return rows.map((r) => ({ deviceId: r.device_id, bucket: plan.toBucket(r.unit), paidCount: r.paid_count, paidFen: r.paid_fen, refundCount: r.refund_count, refundFen: r.refund_fen }));
    });
  }

  recordReconciliation(r: ReconciliationRecord): Promise<void> {
    return this.run(() => {
      this.db
        .prepare(
          `INSERT INTO reconciliations (day, at, matched, discrepancies) VALUES (?, ?, ?, ?)
           ON CONFLICT (day) DO UPDATE SET at = excluded.at, matched = excluded.matched, discrepancies = excluded.discrepancies`,
        )
        .run(r.day, r.at, r.matched, JSON.stringify(r.discrepancies));
    });
  }

  reconciliations(options: { fromDay: string }): Promise<ReconciliationRecord[]> {
    return this.run(() =>
      (this.prepared('SELECT day, at, matched, discrepancies FROM reconciliations WHERE day >= ? ORDER BY day').all(options.fromDay) as ReconciliationRow[]).flatMap(toReconciliation),
    );
  }

  recountMoney(options: MoneyBucketsOptions): Promise<MoneyBucket[]> {
    const { from, to, bucketMs, offsetMs } = options;
    if (![from, to, bucketMs, offsetMs].every(Number.isSafeInteger) || bucketMs <= 0) throw new TypeError('recountMoney: whole ms');
    return this.run(() => {
      const rows = this.db
        .prepare(
          `WITH trades AS (
             SELECT device_id,
               MIN(CASE WHEN (call = 'micropay' AND state = 'SUCCESS') OR (call = 'orderquery' AND state IN ('SUCCESS', 'REFUND')) THEN at END) AS paid_at,
               MAX(CASE WHEN call = 'micropay' THEN amount_fen END) AS amount,
               MAX(CASE WHEN (call = 'reverse' AND state = 'REVERSED') OR (call = 'orderquery' AND state IN ('REVOKED', 'CLOSED', 'PAYERROR')) THEN 1 ELSE 0 END) AS undone
             FROM calls
             WHERE at >= @early AND at < @to AND out_trade_no IS NOT NULL AND call IN ('micropay', 'orderquery', 'reverse') AND (@device IS NULL OR device_id = @device)
             GROUP BY out_trade_no
           ),
           refunds AS (
             SELECT device_id,
               MIN(CASE WHEN call = 'refund' AND state = 'ACCEPTED' THEN at END) AS accepted_at,
               MAX(CASE WHEN call = 'refund' THEN amount_fen END) AS amount,
               MAX(CASE WHEN call = 'refundquery' AND state IN ('CHANGE', 'REFUNDCLOSE') THEN 1 ELSE 0 END) AS failed
             FROM calls
             WHERE at >= @early AND at < @to AND out_refund_no IS NOT NULL AND call IN ('refund', 'refundquery') AND (@device IS NULL OR device_id = @device)
             GROUP BY out_refund_no
           ),
           money AS (
             SELECT device_id, (paid_at + CAST(@offset AS INTEGER)) / CAST(@bucket AS INTEGER) AS bucket, 1 AS paid, amount AS paid_fen, 0 AS refunded, 0 AS refund_fen
               FROM trades WHERE paid_at >= @from AND paid_at < @to AND undone = 0 AND amount > 0
             UNION ALL
             SELECT device_id, (accepted_at + CAST(@offset AS INTEGER)) / CAST(@bucket AS INTEGER), 0, 0, 1, amount
               FROM refunds WHERE accepted_at >= @from AND accepted_at < @to AND failed = 0 AND amount > 0
           )
           SELECT device_id, bucket, sum(paid) AS paid_count, sum(paid_fen) AS paid_fen, sum(refunded) AS refund_count, sum(refund_fen) AS refund_fen
           FROM money GROUP BY device_id, bucket ORDER BY device_id, bucket`,
        )
        .all({ early: from - 86_400_000, from, to, offset: offsetMs, bucket: bucketMs, device: options.deviceId ?? null }) as {
        device_id: string;
        bucket: number;
        paid_count: number;
        paid_fen: number;
        refund_count: number;
        refund_fen: number;
      }[];
      return totalOf(
        rows.map((r) => ({ deviceId: r.device_id, bucket: r.bucket, paidCount: r.paid_count, paidFen: r.paid_fen, refundCount: r.refund_count, refundFen: r.refund_fen })),
        options.total === true,
      );
    });
  }

  attentionCalls(options: { from: number }): Promise<CallRecord[]> {
    return this.run(() =>
      (
        this.prepared("SELECT * FROM calls INDEXED BY calls_attention WHERE at >= ? AND call IN ('reverse', 'refund', 'refundquery') ORDER BY id").all(options.from) as CallRow[]
      ).map(toCall),
    );
  }

  close(): Promise<void> {
    return this.run(() => {
      if (this.db.open) this.db.close();
    });
  }

  /** The synchronous SQLite call as the interface's promise; a thrown error becomes a rejection. */
  private run<T>(work: () => T): Promise<T> {
    try {
      return Promise.resolve(work());
    } catch (error) {
      return Promise.reject(error instanceof StoreError ? error : new StoreError('IO', `backend journal ${this.path}: ${(error as Error).message}`, { cause: error }));
    }
  }
}
