import type { Logger } from '../../log.js';
import { messageOf } from '../../errors.js';
import { HEARTBEAT_HISTORY, type HeartbeatRecord, type HeartbeatReport } from '../heartbeat.js';
import {
  HEARTBEAT_PRUNE_EVERY,
  StoreError,
  toBox,
  toCall,
  toHeartbeat,
  type BoxRow,
  type CallRow,
  type HeartbeatRow,
  type AdminActionRecord,
  type AdminRecord,
  type BackendStore,
  type BoxPolicy,
  type BoxRecord,
  type CallOutcomeKind,
  type CallRecord,
  type CertificateRecord,
  type EnrolResult,
  type FinishedCall,
  type MoneyBucket,
  type MoneyBucketsOptions,
  type ReconciliationRecord,
  type ReconciliationRow,
  toReconciliation,
  totalOf,
  type NewAdminAction,
  type NewCall,
  type NewHeartbeat,
  type NewRefundCall,
  type RefundLimits,
  type RefundStart,
} from '../store.js';
import { FILL_MONEY_SQL, bucketPlan, truthSql, CHINA_OFFSET_MS, DAY_MS, HOUR_MS } from './money.js';
import { DatabaseUnavailable, PgConnection, describePgTarget, type PgState, type PgTarget } from './connection.js';

/**
 * The backend's journal in PostgreSQL (contract §8 "A chain"): what `SqliteBackendStore` keeps, for any number
 * of backend processes sharing one database.
 *
 * Every change is one statement or one short READ COMMITTED transaction with no call outside the database in it
 * (the server records a call, then makes the WeChat Pay call, then records its outcome: three separate
 * changes). Compare-and-set where a row moves on (`finishCall` only from `sent`), `INSERT ... ON CONFLICT` where
 * a row may already be there; enrolments are serialised by a transaction-scoped advisory lock, because the rule
 * that no device id is a prefix of another spans rows no unique key can cover. A revocation is told to every
 * backend by `NOTIFY scanbox_revoked` in the same transaction (delivered at its commit), and so are a box's policy
 * change and an enrolment that replaces a certificate; each backend LISTENs and rechecks its open connections at once (`onRevoked`).
 *
 * Schema: versioned steps in `scanbox_schema`, each run once in its own transaction under an advisory lock, so
 * that backends starting together migrate once; a shipped step is never edited; a database newer than this
 * scanbox is refused.
 */

export const REVOKED_CHANNEL = 'scanbox_revoked';

/** Advisory lock keys (one number space per database): the schema steps, enrolments. */
const LOCK_SCHEMA = 7_246_001;
const LOCK_ENROL = 7_246_002;
/** With a second key, hashtext(device_id): one box's refunds, checked and recorded one at a time. */
const LOCK_REFUND = 7_246_003;
/** The money items worked out again (settleMoney): one backend at a time. */
const LOCK_MONEY = 7_246_004;

/** One step per version; a shipped step is never edited. */
/**
 * The calls moneyBuckets reads: every micropay and refund (their amounts), and the answers that pay, give back
 * or fail them. The rest (an orderquery of a sale still waiting for the password, say) changes no sum. The same
 * condition as the partial index calls_money of schema step 3 (written out there: a shipped step never changes).
 */
const MONEY_ROWS = `(call IN ('micropay', 'refund')
  OR (call = 'orderquery' AND state IN ('SUCCESS', 'REFUND', 'REVOKED', 'CLOSED', 'PAYERROR'))
  OR (call = 'reverse' AND state = 'REVERSED')
  OR (call = 'refundquery' AND state IN ('CHANGE', 'REFUNDCLOSE')))`;

export const PG_MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE boxes (
    device_id      text PRIMARY KEY,
    enrolled_at    bigint NOT NULL,
    revoked_at     bigint,
    last_seen_at   bigint,
    calls          bigint NOT NULL DEFAULT 0,
    errors         bigint NOT NULL DEFAULT 0,
    max_amount_fen bigint CHECK (max_amount_fen IS NULL OR max_amount_fen > 0),
    refunds        text CHECK (refunds IS NULL OR refunds IN ('on', 'off'))
  );

  CREATE TABLE certificates (
    seq        bigserial UNIQUE,
    serial     text PRIMARY KEY,
    device_id  text NOT NULL REFERENCES boxes (device_id),
    issued_at  bigint NOT NULL,
    not_after  bigint NOT NULL,
    revoked_at bigint
  );
  CREATE INDEX certificates_device ON certificates (device_id);

  CREATE TABLE calls (
    id            bigserial PRIMARY KEY,
    device_id     text NOT NULL,
    call          text NOT NULL,
    out_trade_no  text,
    out_refund_no text,
    outcome       text NOT NULL CHECK (outcome IN ('sent', 'success', 'business', 'unknown', 'bill', 'no_bill', 'not_ready', 'refused')),
    code          text,
    state         text,
    amount_fen    bigint CHECK (amount_fen IS NULL OR amount_fen > 0),
    ms            bigint,
    at            bigint NOT NULL
  );
  CREATE INDEX calls_device ON calls (device_id, id);
  CREATE INDEX calls_trade ON calls (out_trade_no) WHERE out_trade_no IS NOT NULL;
  CREATE INDEX calls_refund ON calls (out_refund_no) WHERE out_refund_no IS NOT NULL;
  CREATE INDEX calls_at ON calls (at);
  `,
  // 2: the refund policy reads a box's refunds of a day (startRefund); reconciliation dates a sale by WeChat Pay's
  // payment time (paid_at, from time_end), not by the micropay's start.
  `CREATE INDEX calls_device_call_at ON calls (device_id, call, at);
   ALTER TABLE calls ADD COLUMN paid_at bigint;`,
  // 3: the fleet (contract §11): heartbeats (with each box's latest in a row of its own, so that the fleet page
  // does not read every box's history), the console's admins and what they did, and an index that holds just
  // the calls that move money, with what moneyBuckets reads of them (an index-only scan of a window).
  `CREATE TABLE heartbeats (
     id        bigserial PRIMARY KEY,
     device_id text NOT NULL,
     at        bigint NOT NULL,
     report    text NOT NULL
   );
   CREATE INDEX heartbeats_device ON heartbeats (device_id, id);

   CREATE TABLE heartbeat_latest (
     device_id    text PRIMARY KEY,
     received     bigint NOT NULL DEFAULT 1,
     heartbeat_id bigint NOT NULL,
     at           bigint NOT NULL,
     report       text NOT NULL
   );

   CREATE TABLE admins (
     name          text PRIMARY KEY,
     password_hash text NOT NULL,
     created_at    bigint NOT NULL
   );

   CREATE TABLE admin_actions (
     id        bigserial PRIMARY KEY,
     admin     text NOT NULL,
     action    text NOT NULL,
     device_id text,
     detail    text NOT NULL,
     at        bigint NOT NULL
   );

   CREATE INDEX calls_money ON calls (at) INCLUDE (device_id, call, out_trade_no, out_refund_no, state, amount_fen) 
     WHERE call IN ('micropay', 'refund')
       OR (call = 'orderquery' AND state IN ('SUCCESS', 'REFUND', 'REVOKED', 'CLOSED', 'PAYERROR'))
       OR (call = 'reverse' AND state = 'REVERSED')
       OR (call = 'refundquery' AND state IN ('CHANGE', 'REFUNDCLOSE'));`,
  // 4: the console's money by box and hour and by box and China day, kept as calls finish (store/money.ts),
  // filled here from the calls already journalled; and the backend's own reconciliations, for the problems page.
  `CREATE TABLE money_items (
     kind       text NOT NULL CHECK (kind IN ('paid', 'refund')),
     no         text NOT NULL,
     device_id  text NOT NULL,
     at         bigint NOT NULL,
     amount_fen bigint NOT NULL,
     PRIMARY KEY (kind, no)
   );
   CREATE TABLE money_hours (
     device_id    text NOT NULL,
     hour         bigint NOT NULL,
     paid_count   bigint NOT NULL,
     paid_fen     bigint NOT NULL,
     refund_count bigint NOT NULL,
     refund_fen   bigint NOT NULL,
     PRIMARY KEY (device_id, hour)
   );
   CREATE INDEX money_hours_hour ON money_hours (hour) INCLUDE (device_id, paid_count, paid_fen, refund_count, refund_fen);
   CREATE TABLE money_days (
     device_id    text NOT NULL,
     day          bigint NOT NULL,
     paid_count   bigint NOT NULL,
     paid_fen     bigint NOT NULL,
     refund_count bigint NOT NULL,
     refund_fen   bigint NOT NULL,
     PRIMARY KEY (device_id, day)
   );
   CREATE INDEX money_days_day ON money_days (day) INCLUDE (device_id, paid_count, paid_fen, refund_count, refund_fen);
   CREATE INDEX calls_attention ON calls (at) WHERE call IN ('reverse', 'refund', 'refundquery');
   CREATE INDEX certificates_revoked ON certificates (revoked_at) WHERE revoked_at IS NOT NULL;
   CREATE TABLE reconciliations (
     day           text PRIMARY KEY,
     at            bigint NOT NULL,
     matched       bigint NOT NULL,
     discrepancies text NOT NULL
   );
   ${FILL_MONEY_SQL}`,
  // 5: the orders and refunds whose money item is to be worked out again: finishCall adds them in its one
  // statement, settleMoney takes them in batches off the calls' path (instead of a transaction per call).
  `CREATE TABLE money_recount (
     id   bigserial PRIMARY KEY,
     kind text NOT NULL CHECK (kind IN ('paid', 'refund')),
     no   text NOT NULL
   );`,
];

/** Outcomes of a forwarded refund that may have moved money (a refused or WeChat-refused one did not). */
const HOLDING_REFUND = `outcome IN ('sent', 'success', 'unknown')
  AND NOT EXISTS (SELECT 1 FROM calls q WHERE q.call = 'refundquery' AND q.out_refund_no = r.out_refund_no AND q.state = 'REFUNDCLOSE')`;

const BOX_COLUMNS = `b.device_id, b.enrolled_at, b.revoked_at, b.last_seen_at, b.calls, b.errors, b.max_amount_fen, b.refunds, c.serial, c.not_after`;
const BOX_FROM = `boxes b LEFT JOIN LATERAL (
  SELECT serial, not_after FROM certificates WHERE device_id = b.device_id AND revoked_at IS NULL ORDER BY issued_at DESC, seq DESC LIMIT 1) c ON true`;
/** A certificate by serial and the box of its device id (store.peer): one read per call. */
const PEER_SELECT = `SELECT x.serial AS x_serial, x.device_id AS x_device_id, x.issued_at AS x_issued_at, x.not_after AS x_not_after, x.revoked_at AS x_revoked_at, ${BOX_COLUMNS}
  FROM certificates x LEFT JOIN (${BOX_FROM}) ON b.device_id = x.device_id`;
type PeerRow = BoxRow & { x_serial: string; x_device_id: string; x_issued_at: number; x_not_after: number; x_revoked_at: number | null };
function toPeer(row: PeerRow): { certificate: CertificateRecord; box: BoxRecord | undefined } {
  return {
    certificate: { serial: row.x_serial, deviceId: row.x_device_id, issuedAt: row.x_issued_at, notAfter: row.x_not_after, revokedAt: row.x_revoked_at },
    box: row.device_id === null ? undefined : toBox(row),
  };
}
const CALL_COLUMNS = 'id, device_id, call, out_trade_no, out_refund_no, outcome, code, state, amount_fen, paid_at, ms, at';

const ERROR_OUTCOMES: ReadonlySet<CallOutcomeKind> = new Set(['unknown', 'refused']);

export interface PostgresStoreOptions {
  target: PgTarget;
  password: string | null;
  log: Logger;
  max?: number;
  connectMs?: number;
  statementMs?: number;
  retryMs?: number;
  /** How often the money items of finished calls are settled (settleMoney), in ms; 0: only when asked. Default SETTLE_EVERY_MS. */
  settleMs?: number;
}

export class PostgresBackendStore implements BackendStore {
  readonly db: PgConnection;
  private migrated: Promise<void> | null = null;
  private schemaReady = false;
  private readonly revokedListeners = new Set<(deviceId: string) => void>();
  private readonly log: Logger;
  private settleTimer: NodeJS.Timeout | null = null;
  /** The settle under way or queued (one after another within a process; LOCK_MONEY between processes). */
  private settling: Promise<unknown> = Promise.resolve();
  private settleBusy = false;
  private settleFailure = '';

  /**
   * Connects (to the writable host of the URL's) and brings the schema up to date. Throws StoreError when no
   * host accepts writes within `waitMs` (default 10 s) or the schema is newer than this scanbox; once open, a
   * database that goes away only makes calls fail until one accepts writes again.
   */
  static async open(options: PostgresStoreOptions & { waitMs?: number; lazy?: boolean }): Promise<PostgresBackendStore> {
    const store = new PostgresBackendStore(options);
    const deadline = Date.now() + (options.waitMs ?? 10_000);
    for (;;) {
      await store.db.start();
      try {
        await store.migrate();
        return store;
      } catch (error) {
        if (error instanceof DatabaseUnavailable && options.lazy) {
          // The server listens anyway and refuses every call until a database accepts writes (and is migrated).
          options.log.error('backend: no database accepts writes at start; calls are refused until one does', { database: store.path });
          return store;
        }
        if (!(error instanceof DatabaseUnavailable) || Date.now() >= deadline) {
          await store.close();
          if (error instanceof StoreError) throw error;
          throw new StoreError('IO', `backend database ${describePgTarget(options.target)}: ${(error as Error).message}`, { cause: error });
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  private constructor(options: PostgresStoreOptions) {
    this.log = options.log;
    this.db = new PgConnection({ ...options, listen: [REVOKED_CHANNEL] });
    const settleMs = options.settleMs ?? SETTLE_EVERY_MS;
    if (settleMs > 0) {
      this.settleTimer = setInterval(() => void this.settleInBackground(), settleMs);
      this.settleTimer.unref();
    }
    this.db.on('notification', (channel: string, payload: string) => {
      if (channel === REVOKED_CHANNEL) for (const listener of this.revokedListeners) listener(payload);
    });
    // After a reconnection notifications may have been missed: listeners hear an empty device id (check all).
    this.db.on('listening', () => {
      for (const listener of this.revokedListeners) listener('');
    });
  }

  get path(): string {
    return describePgTarget(this.db.target);
  }

  get state(): PgState {
    return this.db.state;
  }

  /** Calls `listener` when any backend revokes a box or changes its policy (its device id), and with '' after a reconnection. */
  onRevoked(listener: (deviceId: string) => void): () => void {
    this.revokedListeners.add(listener);
    return () => this.revokedListeners.delete(listener);
  }

  private migrate(): Promise<void> {
    if (this.schemaReady) return Promise.resolve();
    this.migrated ??= this.db
      .transaction(async (q) => {
        await q('SELECT pg_advisory_xact_lock($1)', [LOCK_SCHEMA]);
        await q('CREATE TABLE IF NOT EXISTS scanbox_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())');
        const rows = await q<{ v: number | null }>('SELECT max(version) AS v FROM scanbox_schema');
        const version = rows[0]?.v ?? 0;
        if (version > PG_MIGRATIONS.length) {
          throw new StoreError('NEWER', `backend database is schema ${version}, newer than this scanbox (${PG_MIGRATIONS.length})`);
        }
        // A step may work through every call there is (step 4 fills the money sums): no statement limit for it.
        if (version < PG_MIGRATIONS.length) await q('SET LOCAL statement_timeout = 0');
        for (let step = version; step < PG_MIGRATIONS.length; step++) {
          await q(PG_MIGRATIONS[step]!, [], { long: true });
          await q('INSERT INTO scanbox_schema (version) VALUES ($1)', [step + 1]);
        }
      })
      .then(() => {
        this.schemaReady = true;
      })
      .catch((error: unknown) => {
        this.migrated = null;
        throw error;
      });
    return this.migrated;
  }

  /** Schema version of the database (for `migrate` and tests). */
  async schemaVersion(): Promise<number> {
    const rows = await this.db.query<{ v: number | null }>('SELECT max(version) AS v FROM scanbox_schema');
    return rows[0]?.v ?? 0;
  }

  private async run<T>(work: () => Promise<T>): Promise<T> {
    try {
      await this.migrate();
      return await work();
    } catch (error) {
      if (error instanceof StoreError) throw error;
      throw new StoreError('IO', `backend database ${this.db.state.state === 'writable' ? this.db.state.host : 'unavailable'}: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }

  enrol(cert: { deviceId: string; serial: string; notAfter: number; at: number }, policy: Partial<BoxPolicy> = {}): Promise<EnrolResult> {
    return this.run(() =>
      this.db.transaction(async (q): Promise<EnrolResult> => {
        await q('SELECT pg_advisory_xact_lock($1)', [LOCK_ENROL]);
        const clash = await q<{ device_id: string }>(
          `SELECT device_id FROM boxes WHERE device_id <> $1 AND (starts_with(device_id, $1) OR starts_with($1, device_id)) LIMIT 1`,
          [cert.deviceId],
        );
        if (clash[0]) {
          return {
            ok: false,
            problem: `device id ${cert.deviceId} and the enrolled box ${clash[0].device_id} begin alike: each box owns the out_trade_no beginning with its id, so neither may be a prefix of the other`,
          };
        }
        await q(
          `INSERT INTO boxes (device_id, enrolled_at, max_amount_fen, refunds) VALUES ($1, $2, $3, $4)
           ON CONFLICT (device_id) DO UPDATE SET enrolled_at = EXCLUDED.enrolled_at, revoked_at = NULL,
             max_amount_fen = CASE WHEN $5 THEN EXCLUDED.max_amount_fen ELSE boxes.max_amount_fen END,
             refunds = CASE WHEN $6 THEN EXCLUDED.refunds ELSE boxes.refunds END`,
          [cert.deviceId, cert.at, policy.maxAmountFen ?? null, policy.refunds ?? null, policy.maxAmountFen !== undefined, policy.refunds !== undefined],
        );
        const replaced = await q('UPDATE certificates SET revoked_at = $2 WHERE device_id = $1 AND revoked_at IS NULL RETURNING serial', [cert.deviceId, cert.at]);
        await q('INSERT INTO certificates (serial, device_id, issued_at, not_after) VALUES ($1, $2, $3, $4)', [cert.serial, cert.deviceId, cert.at, cert.notAfter]);
        // A certificate replaced is revoked: told like a revoke, so open connections made with it are cut at once.
        if (replaced.length > 0) await q('SELECT pg_notify($1, $2)', [REVOKED_CHANNEL, cert.deviceId]);
        const rows = await q<BoxRow>(`SELECT ${BOX_COLUMNS} FROM ${BOX_FROM} WHERE b.device_id = $1`, [cert.deviceId]);
        return { ok: true, box: toBox(rows[0]!) };
      }),
    );
  }

  setPolicy(deviceId: string, policy: Partial<BoxPolicy>): Promise<boolean> {
    return this.run(async () => {
      // Told like a revoke (delivered at the commit): every backend rechecks its open connections, whose
      // micropays reuse the box's policy as last read (server.ts).
      const rows = await this.db.query(
        `WITH u AS (
           UPDATE boxes SET max_amount_fen = CASE WHEN $2 THEN $3::bigint ELSE max_amount_fen END, refunds = CASE WHEN $4 THEN $5::text ELSE refunds END
           WHERE device_id = $1 RETURNING device_id
         )
         SELECT device_id, pg_notify($6, device_id) FROM u`,
        [deviceId, policy.maxAmountFen !== undefined, policy.maxAmountFen ?? null, policy.refunds !== undefined, policy.refunds ?? null, REVOKED_CHANNEL],
      );
      return rows.length === 1;
    });
  }

  revoke(deviceId: string, at: number): Promise<boolean> {
    return this.run(() =>
      this.db.transaction(async (q) => {
        const found = await q('UPDATE boxes SET revoked_at = COALESCE(revoked_at, $2) WHERE device_id = $1 RETURNING device_id', [deviceId, at]);
        if (found.length === 0) return false;
        await q('UPDATE certificates SET revoked_at = $2 WHERE device_id = $1 AND revoked_at IS NULL', [deviceId, at]);
        await q('SELECT pg_notify($1, $2)', [REVOKED_CHANNEL, deviceId]);
        return true;
      }),
    );
  }

  box(deviceId: string): Promise<BoxRecord | undefined> {
    return this.run(async () => {
      const rows = await this.db.query<BoxRow>(`SELECT ${BOX_COLUMNS} FROM ${BOX_FROM} WHERE b.device_id = $1`, [deviceId]);
      return rows[0] ? toBox(rows[0]) : undefined;
    });
  }

  boxes(): Promise<BoxRecord[]> {
    return this.run(async () => (await this.db.query<BoxRow>(`SELECT ${BOX_COLUMNS} FROM ${BOX_FROM} ORDER BY b.device_id COLLATE "C"`)).map(toBox));
  }

  peer(serial: string): Promise<{ certificate: CertificateRecord; box: BoxRecord | undefined } | undefined> {
    return this.run(async () => {
      const rows = await this.db.query<PeerRow>(`${PEER_SELECT} WHERE x.serial = $1`, [serial], 'scanbox_peer');
      return rows[0] === undefined ? undefined : toPeer(rows[0]);
    });
  }

  peers(serials: readonly string[]): Promise<Map<string, { certificate: CertificateRecord; box: BoxRecord | undefined }>> {
    return this.run(async () => {
      const found = new Map<string, { certificate: CertificateRecord; box: BoxRecord | undefined }>();
      if (serials.length === 0) return found;
      const rows = await this.db.query<PeerRow>(`${PEER_SELECT} WHERE x.serial = ANY($1::text[])`, [[...new Set(serials)]], 'scanbox_peers');
      for (const row of rows) found.set(row.x_serial, toPeer(row));
      return found;
    });
  }

  certificate(serial: string): Promise<CertificateRecord | undefined> {
    return this.run(async () => {
      const rows = await this.db.query<{ serial: string; device_id: string; issued_at: number; not_after: number; revoked_at: number | null }>(
        'SELECT serial, device_id, issued_at, not_after, revoked_at FROM certificates WHERE serial = $1',
        [serial],
      );
      const row = rows[0];
      return row ? { serial: row.serial, deviceId: row.device_id, issuedAt: row.issued_at, notAfter: row.not_after, revokedAt: row.revoked_at } : undefined;
    });
  }

  startCall(call: NewCall): Promise<number> {
    return this.run(async () => {
      const rows = await this.db.query<{ id: number }>(
        `WITH c AS (
           INSERT INTO calls (device_id, call, out_trade_no, out_refund_no, amount_fen, outcome, at) VALUES ($1, $2, $3, $4, $5, 'sent', $6) RETURNING id
         ), b AS (
           UPDATE boxes SET calls = calls + 1, last_seen_at = GREATEST(COALESCE(last_seen_at, $6), $6) WHERE device_id = $1
         )
         SELECT id FROM c`,
        [call.deviceId, call.call, call.outTradeNo, call.outRefundNo, call.amountFen ?? null, call.at],
        'scanbox_start_call',
      );
      return rows[0]!.id;
    });
  }

  finishCall(id: number, result: FinishedCall): Promise<void> {
    return this.run(async () => {
      // One statement: the outcome, the box's error count, and the order or refund put on the list whose money
      // items settleMoney works out again (the same commit, so a settle that sees the entry sees the outcome).
      // Not listed: an answer that moves no sum (an orderquery still USERPAYING, a refundquery SUCCESS), nor an
      // orderquery saying paid of an order already counted as paid from no later than this call (a box asking
      // again): its item's time is the first paying call's, its amount the micropay's, so this call changes neither.
      const rows = await this.db.query<{ id: number }>(
        `WITH c AS (
           UPDATE calls SET outcome = $2, code = $3, state = $4, ms = $5, paid_at = $7 WHERE id = $1 AND outcome = 'sent'
           RETURNING id, device_id, call, out_trade_no, out_refund_no, state, at
         ), b AS (
           UPDATE boxes SET errors = errors + 1 WHERE $6 AND device_id IN (SELECT device_id FROM c)
         ), r AS (
           INSERT INTO money_recount (kind, no)
             SELECT CASE WHEN call IN ('refund', 'refundquery') THEN 'refund' ELSE 'paid' END,
                    CASE WHEN call IN ('refund', 'refundquery') THEN out_refund_no ELSE out_trade_no END
             FROM c
             WHERE ${MONEY_ROWS}
               AND ((call IN ('micropay', 'orderquery', 'reverse') AND out_trade_no IS NOT NULL) OR (call IN ('refund', 'refundquery') AND out_refund_no IS NOT NULL))
               AND NOT (call = 'orderquery' AND state IN ('SUCCESS', 'REFUND')
                 AND EXISTS (SELECT 1 FROM money_items m WHERE m.kind = 'paid' AND m.no = c.out_trade_no AND m.at <= c.at))
         )
         SELECT id FROM c`,
        [id, result.outcome, result.code, result.state ?? null, Math.round(result.ms), ERROR_OUTCOMES.has(result.outcome), result.paidAt ?? null],
        'scanbox_finish_call',
      );
      if (rows.length !== 1) throw new Error(`call ${id} is not a call under way`);
    });
  }

  startRefund(call: NewRefundCall, limits: RefundLimits): Promise<RefundStart> {
    return this.run(() =>
      this.db.transaction(async (q): Promise<RefundStart> => {
        // Two refunds of one box at once (through two backends) cannot both pass a limit: they take turns here.
        await q('SELECT pg_advisory_xact_lock($1, hashtext($2))', [LOCK_REFUND, call.deviceId]);
        const earlier = (
          await q<{ out_trade_no: string; amount_fen: number | null; device_id: string }>(
            `SELECT out_trade_no, amount_fen, device_id FROM calls WHERE call = 'refund' AND out_refund_no = $1 AND outcome <> 'refused' ORDER BY id LIMIT 1`,
            [call.outRefundNo],
          )
        )[0];
        if (earlier !== undefined && (earlier.out_trade_no !== call.outTradeNo || earlier.amount_fen !== call.amountFen || earlier.device_id !== call.deviceId)) {
          return { ok: false, code: 'BAD_REQUEST', text: `out_refund_no ${call.outRefundNo} was used before for another order or amount` };
        }
        const sale = (
          await q<{ amount_fen: number }>(
            `SELECT amount_fen FROM calls WHERE device_id = $1 AND call = 'micropay' AND out_trade_no = $2 AND amount_fen IS NOT NULL ORDER BY id LIMIT 1`,
            [call.deviceId, call.outTradeNo],
          )
        )[0];
        const paid =
          sale !== undefined &&
          (
            await q(
              `SELECT 1 FROM calls WHERE device_id = $1 AND out_trade_no = $2
                 AND ((call = 'micropay' AND state = 'SUCCESS') OR (call = 'orderquery' AND state IN ('SUCCESS', 'REFUND'))) LIMIT 1`,
              [call.deviceId, call.outTradeNo],
            )
          ).length === 1 &&
          (
            await q(
              `SELECT 1 FROM calls WHERE out_trade_no = $1 AND ((call = 'reverse' AND state = 'REVERSED') OR (call = 'orderquery' AND state IN ('REVOKED', 'CLOSED'))) LIMIT 1`,
              [call.outTradeNo],
            )
          ).length === 0;
        if (!paid || sale === undefined) {
          return { ok: false, code: 'NOT_CHARGED', text: `the backend's journal shows no paid order ${call.outTradeNo} of this box` };
        }
        const totalFeeFen = sale.amount_fen;
        if (call.claimedTotalFeeFen !== totalFeeFen) {
          return { ok: false, code: 'BAD_REQUEST', text: `totalFee ${call.claimedTotalFeeFen} is not the order's amount as the backend charged it` };
        }
        if (earlier === undefined) {
          const held = (
            await q<{ fen: number }>(
              `SELECT coalesce(sum(fen), 0) AS fen FROM (
                 SELECT max(amount_fen) AS fen FROM calls r WHERE call = 'refund' AND out_trade_no = $1 AND ${HOLDING_REFUND} GROUP BY out_refund_no) s`,
              [call.outTradeNo],
            )
          )[0]!;
          if (held.fen + call.amountFen > totalFeeFen) {
            return { ok: false, code: 'OVER_AMOUNT', text: `refunds of ${call.outTradeNo} would pass its amount: ${totalFeeFen - held.fen} fen left` };
          }
          const day = (
            await q<{ fen: number }>(
              `SELECT coalesce(sum(fen), 0) AS fen FROM (
                 SELECT max(amount_fen) AS fen, min(at) AS first FROM calls r WHERE device_id = $1 AND call = 'refund' AND ${HOLDING_REFUND}
                   AND at >= $2::bigint - 86400000 GROUP BY out_refund_no) s WHERE first >= $2 AND first < $3`,
              [call.deviceId, limits.dayFrom, limits.dayTo],
            )
          )[0]!;
          if (day.fen + call.amountFen > limits.dayMaxFen) {
            return { ok: false, code: 'REFUND_LIMIT', text: `the box's refunds today would pass ${limits.dayMaxFen} fen (${day.fen} fen refunded)` };
          }
        }
        const rows = await q<{ id: number }>(
          `WITH c AS (
             INSERT INTO calls (device_id, call, out_trade_no, out_refund_no, amount_fen, outcome, at) VALUES ($1, 'refund', $2, $3, $4, 'sent', $5) RETURNING id
           ), b AS (
             UPDATE boxes SET calls = calls + 1, last_seen_at = GREATEST(COALESCE(last_seen_at, $5), $5) WHERE device_id = $1
           )
           SELECT id FROM c`,
          [call.deviceId, call.outTradeNo, call.outRefundNo, call.amountFen, call.at],
        );
        return { ok: true, id: rows[0]!.id, totalFeeFen, again: earlier !== undefined };
      }),
    );
  }

  orderStartedBefore(deviceId: string, outTradeNo: string, before: number): Promise<boolean> {
    return this.run(
      async () =>
        (
          await this.db.query(`SELECT 1 FROM calls WHERE device_id = $1 AND call = 'micropay' AND out_trade_no = $2 AND outcome <> 'refused' AND at < $3 LIMIT 1`, [
            deviceId,
            outTradeNo,
            before,
          ])
        ).length === 1,
    );
  }

  refusedCall(call: NewCall, code: string): Promise<void> {
    return this.run(async () => {
      await this.db.query(
        `WITH c AS (
           INSERT INTO calls (device_id, call, out_trade_no, out_refund_no, amount_fen, outcome, code, at) VALUES ($1, $2, $3, $4, $5, 'refused', $6, $7)
         )
         UPDATE boxes SET calls = calls + 1, errors = errors + 1, last_seen_at = GREATEST(COALESCE(last_seen_at, $7), $7) WHERE device_id = $1`,
        [call.deviceId, call.call, call.outTradeNo, call.outRefundNo, call.amountFen ?? null, code, call.at],
      );
    });
  }

  calls(options: { deviceId?: string; limit?: number } = {}): Promise<CallRecord[]> {
    const limit = options.limit ?? 1000;
    return this.run(async () => {
      const rows =
        options.deviceId === undefined
          ? await this.db.query<CallRow>(`SELECT ${CALL_COLUMNS} FROM calls ORDER BY id DESC LIMIT $1`, [limit])
          : await this.db.query<CallRow>(`SELECT ${CALL_COLUMNS} FROM calls WHERE device_id = $1 ORDER BY id DESC LIMIT $2`, [options.deviceId, limit]);
      return rows.map(toCall).reverse();
    });
  }

  tradeCalls(options: { from: number; to: number; outTradeNos?: readonly string[] }): Promise<CallRecord[]> {
    return this.run(async () => {
      const rows = await this.db.query<CallRow>(
        `WITH trades AS (
           SELECT out_trade_no FROM calls WHERE at >= $1 AND at < $2 AND out_trade_no IS NOT NULL
           UNION SELECT unnest($3::text[])
         ),
         refunds AS (SELECT out_refund_no FROM calls WHERE out_trade_no IN (SELECT out_trade_no FROM trades) AND out_refund_no IS NOT NULL)
         SELECT ${CALL_COLUMNS} FROM calls
         WHERE out_trade_no IN (SELECT out_trade_no FROM trades) OR (out_trade_no IS NULL AND out_refund_no IN (SELECT out_refund_no FROM refunds))
         ORDER BY id`,
        [options.from, options.to, [...(options.outTradeNos ?? [])]],
      );
      return rows.map(toCall);
    });
  }

  recordHeartbeat(heartbeat: NewHeartbeat): Promise<void> {
    return this.recordHeartbeats([heartbeat]);
  }

  recordHeartbeats(heartbeats: readonly NewHeartbeat[]): Promise<void> {
    if (heartbeats.length === 0) return Promise.resolve();
    return this.run(async () => {
      // One statement: the history's rows, and each box's latest (the newest by id wins, whichever backend commits
      // first) with its count of heartbeats received. A box twice in the batch is one row of the latest (ON
      // CONFLICT may touch a row once per statement): its last, counted as many.
      const last = new Map<string, { heartbeat: NewHeartbeat; n: number }>();
      for (const heartbeat of heartbeats) last.set(heartbeat.deviceId, { heartbeat, n: (last.get(heartbeat.deviceId)?.n ?? 0) + 1 });
      const rows = await this.db.query<{ device_id: string; received: number; n: number }>(
        `WITH h AS (
           INSERT INTO heartbeats (device_id, at, report) SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[]) RETURNING id, device_id
         ), top AS (
           SELECT device_id, max(id) AS id FROM h GROUP BY device_id
         ), newest AS (
           SELECT g.device_id, top.id, g.at, g.report, g.n FROM unnest($4::text[], $5::bigint[], $6::text[], $7::bigint[]) AS g(device_id, at, report, n) JOIN top USING (device_id)
         ), l AS (
           INSERT INTO heartbeat_latest (device_id, received, heartbeat_id, at, report) SELECT device_id, n, id, at, report FROM newest ORDER BY device_id
           ON CONFLICT (device_id) DO UPDATE SET
             received = heartbeat_latest.received + EXCLUDED.received,
             at = CASE WHEN EXCLUDED.heartbeat_id > heartbeat_latest.heartbeat_id THEN EXCLUDED.at ELSE heartbeat_latest.at END,
             report = CASE WHEN EXCLUDED.heartbeat_id > heartbeat_latest.heartbeat_id THEN EXCLUDED.report ELSE heartbeat_latest.report END,
             heartbeat_id = GREATEST(EXCLUDED.heartbeat_id, heartbeat_latest.heartbeat_id)
           RETURNING device_id, received
         )
         SELECT l.device_id, l.received, newest.n FROM l JOIN newest USING (device_id)`,
        [
          heartbeats.map((h) => h.deviceId),
          heartbeats.map((h) => h.at),
          heartbeats.map((h) => JSON.stringify(h.report)),
          [...last.keys()],
          [...last.values()].map((l) => l.heartbeat.at),
          [...last.values()].map((l) => JSON.stringify(l.heartbeat.report)),
          [...last.values()].map((l) => l.n),
        ],
      );
      // Pruning walks HEARTBEAT_HISTORY index entries: done for a box when its count of heartbeats received passes a
      // multiple of HEARTBEAT_PRUNE_EVERY, so a box keeps at most that many more than HEARTBEAT_HISTORY (a prune
      // that fails is done at the next).
      for (const row of rows) {
        if (Math.floor(row.received / HEARTBEAT_PRUNE_EVERY) === Math.floor((row.received - row.n) / HEARTBEAT_PRUNE_EVERY)) continue;
        await this.db.query(
          `DELETE FROM heartbeats WHERE device_id = $1
             AND id <= (SELECT id FROM heartbeats WHERE device_id = $1 ORDER BY id DESC OFFSET $2 LIMIT 1)`,
          [row.device_id, HEARTBEAT_HISTORY],
        );
      }
    });
  }

  revocationMark(): Promise<string> {
    return this.run(async () => {
      const rows = await this.db.query<{ n: number; m: number | null }>('SELECT count(*) AS n, max(revoked_at) AS m FROM certificates WHERE revoked_at IS NOT NULL');
      return `${rows[0]!.n}:${rows[0]!.m ?? ''}`;
    });
  }

  latestHeartbeats(): Promise<HeartbeatRecord[]> {
    return this.run(async () =>
      (await this.db.query<HeartbeatRow>('SELECT device_id, at, report FROM heartbeat_latest ORDER BY device_id COLLATE "C"')).flatMap(toHeartbeat),
    );
  }

  heartbeats(deviceId: string, options: { limit?: number } = {}): Promise<HeartbeatRecord[]> {
    const limit = Math.min(options.limit ?? HEARTBEAT_HISTORY, HEARTBEAT_HISTORY);
    return this.run(async () =>
      (await this.db.query<HeartbeatRow>('SELECT device_id, at, report FROM heartbeats WHERE device_id = $1 ORDER BY id DESC LIMIT $2', [deviceId, limit])).flatMap(
        toHeartbeat,
      ),
    );
  }

  putAdmin(admin: { name: string; passwordHash: string; at: number }): Promise<boolean> {
    return this.run(async () => {
      // One statement, race-free: a row this statement inserted has no xmax; one it updated has its own.
      const rows = await this.db.query<{ inserted: boolean }>(
        `INSERT INTO admins (name, password_hash, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET password_hash = EXCLUDED.password_hash
         RETURNING (xmax = 0) AS inserted`,
        [admin.name, admin.passwordHash, admin.at],
      );
      return rows[0]!.inserted;
    });
  }

  removeAdmin(name: string): Promise<boolean> {
    return this.run(async () => (await this.db.query('DELETE FROM admins WHERE name = $1 RETURNING name', [name])).length === 1);
  }

  admin(name: string): Promise<AdminRecord | undefined> {
    return this.run(async () => {
      const row = (
        await this.db.query<{ name: string; password_hash: string; created_at: number }>('SELECT name, password_hash, created_at FROM admins WHERE name = $1', [name])
      )[0];
      return row ? { name: row.name, passwordHash: row.password_hash, createdAt: row.created_at } : undefined;
    });
  }

  recordAdminAction(action: NewAdminAction): Promise<void> {
    return this.run(async () => {
      await this.db.query('INSERT INTO admin_actions (admin, action, device_id, detail, at) VALUES ($1, $2, $3, $4, $5)', [
        action.admin,
        action.action,
        action.deviceId,
        action.detail,
        action.at,
      ]);
    });
  }

  adminActions(options: { limit?: number } = {}): Promise<AdminActionRecord[]> {
    return this.run(async () =>
      (
        await this.db.query<{ id: number; admin: string; action: string; device_id: string | null; detail: string; at: number }>(
          'SELECT id, admin, action, device_id, detail, at FROM admin_actions ORDER BY id DESC LIMIT $1',
          [options.limit ?? 100],
        )
      ).map((r) => ({ id: r.id, admin: r.admin, action: r.action, deviceId: r.device_id, detail: r.detail, at: r.at })),
    );
  }

  /**
   * Works the money items of the calls finished so far out again, and their sums (schema step 5: finishCall
   * lists them, this takes the list in batches of SETTLE_BATCH, each one transaction under LOCK_MONEY, so one
   * backend of a chain settles at a time). A timer does it every `settleMs` (SETTLE_EVERY_MS); moneyBuckets does it before it
   * reads, so the sums it reads count every call finished before it was asked. Answers how many entries it took.
   */
  settleMoney(): Promise<number> {
    const run = this.settling.then(() =>
      this.run(async () => {
        let taken = 0;
        for (;;) {
          const batch = await this.db.transaction(async (q) => {
            // The sums are worked out from the calls: a settle lost in a crash (its commit not yet on disk) loses its
            // taking of the list with it, and the next settle does it again. So its commit does not wait for the disk.
            await q("SET LOCAL synchronous_commit = 'off'");
            await q('SELECT pg_advisory_xact_lock($1)', [LOCK_MONEY]);
            return (await q<{ taken: number }>(SETTLE_SQL))[0]!.taken;
          });
          taken += batch;
          if (batch < SETTLE_BATCH) return taken;
        }
      }),
    );
    this.settling = run.catch(() => undefined);
    return run;
  }

  /** The timer's settle: skipped while one is under way; a failure told once until it changes or heals. */
  private async settleInBackground(): Promise<void> {
    if (this.settleBusy) return;
    this.settleBusy = true;
    try {
      await this.settleMoney();
      if (this.settleFailure !== '') this.log.info('backend: the money sums are kept up to date again');
      this.settleFailure = '';
    } catch (error) {
      // No database: every call says so already.
      if (error instanceof StoreError && error.cause instanceof DatabaseUnavailable) return;
      const text = messageOf(error);
      if (text !== this.settleFailure) this.log.error('backend: cannot keep the money sums up to date; the console reads them when it can', { error: text });
      this.settleFailure = text;
    } finally {
      this.settleBusy = false;
    }
  }

  moneyBuckets(options: MoneyBucketsOptions): Promise<MoneyBucket[]> {
    let plan: ReturnType<typeof bucketPlan>;
    try {
      plan = bucketPlan(options);
    } catch (error) {
      return Promise.reject(error as Error);
    }
    const device = options.total ? "'*'::text" : 'device_id';
    return this.run(async () => {
      await this.settleMoney();
      const rows = await this.db.query<{ device_id: string; unit: number; paid_count: number; paid_fen: number; refund_count: number; refund_fen: number }>(
        `SELECT ${device} AS device_id, ${plan.column} AS unit, sum(paid_count)::bigint AS paid_count, sum(paid_fen)::bigint AS paid_fen,
           sum(refund_count)::bigint AS refund_count, sum(refund_fen)::bigint AS refund_fen
         FROM ${plan.table} WHERE ${plan.column} >= $1 AND ${plan.column} < $2 AND ($3::text IS NULL OR device_id = $3)
         GROUP BY 1, 2 HAVING sum(paid_count) <> 0 OR sum(refund_count) <> 0 ORDER BY ${device} COLLATE "C", ${plan.column}`,
        [plan.lo, plan.hi, options.deviceId ?? null],
      );
      return rows.map((r) => ({ deviceId: r.device_id, bucket: plan.toBucket(r.unit), paidCount: r.paid_count, paidFen: r.paid_fen, refundCount: r.refund_count, refundFen: r.refund_fen }));
    });
  }

  recordReconciliation(r: ReconciliationRecord): Promise<void> {
    return this.run(async () => {
      await this.db.query(
        `INSERT INTO reconciliations (day, at, matched, discrepancies) VALUES ($1, $2, $3, $4)
         ON CONFLICT (day) DO UPDATE SET at = EXCLUDED.at, matched = EXCLUDED.matched, discrepancies = EXCLUDED.discrepancies`,
        [r.day, r.at, r.matched, JSON.stringify(r.discrepancies)],
      );
    });
  }

  reconciliations(options: { fromDay: string }): Promise<ReconciliationRecord[]> {
    return this.run(async () =>
      (await this.db.query<ReconciliationRow>('SELECT day, at, matched, discrepancies FROM reconciliations WHERE day >= $1 ORDER BY day', [options.fromDay])).flatMap(
        toReconciliation,
      ),
    );
  }

  /** The money items and their sums worked out again from every call (migrate, after copying the calls). */
  static async rebuildMoney(q: <R extends Record<string, unknown>>(text: string, values?: unknown[], options?: { long?: boolean }) => Promise<R[]>): Promise<void> {
    await q('DELETE FROM money_recount', [], { long: true });
    await q('DELETE FROM money_items', [], { long: true });
    await q('DELETE FROM money_hours', [], { long: true });
    await q('DELETE FROM money_days', [], { long: true });
    for (const statement of FILL_MONEY_SQL.split(';').map((x) => x.trim()).filter((x) => x !== '')) await q(statement, [], { long: true });
  }

  recountMoney(options: MoneyBucketsOptions): Promise<MoneyBucket[]> {
    const { from, to, bucketMs, offsetMs } = options;
    if (![from, to, bucketMs, offsetMs].every(Number.isSafeInteger) || bucketMs <= 0) throw new TypeError('recountMoney: whole ms');
    const values: unknown[] = [from - 86_400_000, from, to, offsetMs, bucketMs];
    // Only the money rows of the window (the partial index calls_money; one box's through calls_device_call_at).
    let where = `at >= $1 AND at < $3 AND ${MONEY_ROWS}`;
    if (options.deviceId !== undefined) {
      values.push(options.deviceId);
      where += ' AND device_id = $6';
    }
    return this.run(async () => {
      const rows = await this.db.query<{ device_id: string; bucket: number; paid_count: number; paid_fen: number; refund_count: number; refund_fen: number }>(
        `WITH trades AS (
           SELECT device_id,
             min(at) FILTER (WHERE (call = 'micropay' AND state = 'SUCCESS') OR (call = 'orderquery' AND state IN ('SUCCESS', 'REFUND'))) AS paid_at,
             max(amount_fen) FILTER (WHERE call = 'micropay') AS amount,
             coalesce(bool_or((call = 'reverse' AND state = 'REVERSED') OR (call = 'orderquery' AND state IN ('REVOKED', 'CLOSED', 'PAYERROR'))), false) AS undone
           FROM calls
           WHERE ${where} AND out_trade_no IS NOT NULL AND call IN ('micropay', 'orderquery', 'reverse')
           GROUP BY device_id, out_trade_no
         ),
         refunds AS (
           SELECT device_id,
             min(at) FILTER (WHERE call = 'refund' AND state = 'ACCEPTED') AS accepted_at,
             max(amount_fen) FILTER (WHERE call = 'refund') AS amount,
             coalesce(bool_or(call = 'refundquery' AND state IN ('CHANGE', 'REFUNDCLOSE')), false) AS failed
           FROM calls
           WHERE ${where} AND out_refund_no IS NOT NULL AND call IN ('refund', 'refundquery')
           GROUP BY device_id, out_refund_no
         ),
         money AS (
           SELECT device_id, (paid_at + $4::bigint) / $5::bigint AS bucket, 1 AS paid, amount AS paid_fen, 0 AS refunded, 0::bigint AS refund_fen
             FROM trades WHERE paid_at >= $2 AND paid_at < $3 AND NOT undone AND amount > 0
           UNION ALL
           SELECT device_id, (accepted_at + $4::bigint) / $5::bigint, 0, 0::bigint, 1, amount
             FROM refunds WHERE accepted_at >= $2 AND accepted_at < $3 AND NOT failed AND amount > 0
         )
         SELECT device_id, bucket, sum(paid)::bigint AS paid_count, sum(paid_fen)::bigint AS paid_fen, sum(refunded)::bigint AS refund_count,
           sum(refund_fen)::bigint AS refund_fen
         FROM money GROUP BY device_id, bucket ORDER BY device_id COLLATE "C", bucket`,
        values,
      );
      return totalOf(
        rows.map((r) => ({ deviceId: r.device_id, bucket: r.bucket, paidCount: r.paid_count, paidFen: r.paid_fen, refundCount: r.refund_count, refundFen: r.refund_fen })),
        options.total === true,
      );
    });
  }

  attentionCalls(options: { from: number }): Promise<CallRecord[]> {
    return this.run(async () =>
      (await this.db.query<CallRow>(`SELECT ${CALL_COLUMNS} FROM calls WHERE at >= $1 AND call IN ('reverse', 'refund', 'refundquery') ORDER BY id`, [options.from])).map(
        toCall,
      ),
    );
  }

  async close(): Promise<void> {
    if (this.settleTimer !== null) clearInterval(this.settleTimer);
    this.settleTimer = null;
    // A settle under way finishes first (what it has not taken stays listed for the next start).
    await this.settling;
    return this.db.close();
  }
}

/**
 * How often a backend settles the money sums on its own: the list stays short, and each settle is one
 * transaction whatever its size, so a chain's calls meet a settle's work a few times a minute, not every second
 * (the console settles before it reads in any case).
 */
export const SETTLE_EVERY_MS = 5000;

/** How many entries of money_recount one settle transaction takes. */
export const SETTLE_BATCH = 2000;

/**
 * One batch of money_recount settled (run after LOCK_MONEY is taken, in that transaction): the entries taken
 * off the list, each order's or refund's item worked out again from all of its calls (truthSql) and, when it
 * changed, the old one taken off the sums and the new one put on. The entries and the calls they name are read
 * in one snapshot, and finishCall adds an entry in the statement that records the outcome, so every outcome
 * whose entry is taken here is counted; an outcome committed later has an entry left for the next batch. An
 * entry taken twice, or an outcome that changes nothing, moves nothing. Answers how many entries it took.
 */
const SETTLE_SQL = (() => {
  // Each key's item worked out from its own calls (an index scan of calls_trade or calls_refund per key).
  const truth = truthSql('both', `k.kind = 'paid' AND out_trade_no = k.no`, `k.kind = 'refund' AND out_refund_no = k.no`);
  const sums = (table: string, column: string, unit: string): string => `
    INSERT INTO ${table} (device_id, ${column}, paid_count, paid_fen, refund_count, refund_fen)
      SELECT device_id, ${unit}, sum(CASE WHEN kind = 'paid' THEN n ELSE 0 END), sum(CASE WHEN kind = 'paid' THEN fen ELSE 0 END),
        sum(CASE WHEN kind = 'refund' THEN n ELSE 0 END), sum(CASE WHEN kind = 'refund' THEN fen ELSE 0 END)
      FROM delta GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (device_id, ${column}) DO UPDATE SET paid_count = ${table}.paid_count + EXCLUDED.paid_count, paid_fen = ${table}.paid_fen + EXCLUDED.paid_fen,
      refund_count = ${table}.refund_count + EXCLUDED.refund_count, refund_fen = ${table}.refund_fen + EXCLUDED.refund_fen`;
  // The batch is the list's first entries by id, taken as a range (an entry committed later with a smaller id is
  // not in this statement's snapshot: it stays for the next batch).
  return `WITH taken AS (
      DELETE FROM money_recount WHERE id <= (SELECT max(id) FROM (SELECT id FROM money_recount ORDER BY id LIMIT ${SETTLE_BATCH}) f) RETURNING kind, no
    ),
    keys AS (SELECT DISTINCT kind, no FROM taken),
    item AS (
      SELECT k.kind, k.no, t.kind IS NOT NULL AS now, t.device_id AS now_device, t.at AS now_at, t.amount AS now_fen,
        m.kind IS NOT NULL AS was, m.device_id AS was_device, m.at AS was_at, m.amount_fen AS was_fen
      FROM keys k
      LEFT JOIN LATERAL (${truth}) t ON true
      LEFT JOIN money_items m ON m.kind = k.kind AND m.no = k.no
    ),
    changed AS (SELECT * FROM item WHERE (now_device, now_at, now_fen) IS DISTINCT FROM (was_device, was_at, was_fen)),
    gone AS (DELETE FROM money_items m USING changed c WHERE m.kind = c.kind AND m.no = c.no AND NOT c.now),
    put AS (
      INSERT INTO money_items (kind, no, device_id, at, amount_fen) SELECT kind, no, now_device, now_at, now_fen FROM changed WHERE now
      ON CONFLICT (kind, no) DO UPDATE SET device_id = EXCLUDED.device_id, at = EXCLUDED.at, amount_fen = EXCLUDED.amount_fen
    ),
    delta AS (
      SELECT kind, now_device AS device_id, now_at AS at, 1 AS n, now_fen AS fen FROM changed WHERE now
      UNION ALL
      SELECT kind, was_device, was_at, -1, -was_fen FROM changed WHERE was
    ),
    hours AS (${sums('money_hours', 'hour', `at / ${HOUR_MS}`)}),
    days AS (${sums('money_days', 'day', `(at + ${CHINA_OFFSET_MS}) / ${DAY_MS}`)})
    SELECT count(*)::int AS taken FROM taken`;
})();
