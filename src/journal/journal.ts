/**
 * The journal: every sale and every step of it, in one SQLite file, committed before anyone is told
 * (contract §6.1). Each method that changes data is exactly one transaction, so one fsync in WAL with
 * synchronous=FULL, and a power cut or a full disk leaves either the whole change or none of it.
 */
import fs from 'node:fs';
import nodePath from 'node:path';
import Database from 'better-sqlite3';
import type { Database as SqliteDatabase, Statement } from 'better-sqlite3';
import type { Clock } from '../clock.js';
import { errnoOf, messageOf } from '../errors.js';
import { DEVICE_ID, DEVICE_ID_RULE } from '../ids.js';
import { formatYuan } from '../money.js';
import { MIGRATIONS, SCHEMA_VERSION } from './migrations.js';
import { RefundBook } from './refunds.js';
import { SALE_STATES, canTransition } from './states.js';
import type { SaleState } from './states.js';

export type JournalErrorCode = 'CORRUPT' | 'FULL' | 'READONLY' | 'BAD_TRANSITION' | 'NOT_FOUND' | 'IO';

export class JournalError extends Error {
  constructor(
    readonly code: JournalErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'JournalError';
  }
}

export interface Sale {
  /** Never reused (AUTOINCREMENT): the sequence behind out_trade_no. */
  id: number;
  /** The register's sale reference; not unique, a FAILED ref may be tried again. */
  ref: string;
  amountFen: number;
  outTradeNo: string;
  state: SaleState;
  /** Masked payment code, e.g. 13**********3456; never the full code. */
  codeMasked: string | null;
  transactionId: string | null;
  finalCode: string | null;
  finalText: string | null;
  /** The code the register gets once a reversal is confirmed (TIMEOUT_REVERSED, CANCELLED, INTERRUPTED ...). */
  reverseReason: string | null;
  reverseAttempts: number;
  /** Wall ms; back-off of the background reversal queue. */
  nextReverseAt: number | null;
  /** Wall ms when micropay was committed to be sent. */
  submittedAt: number | null;
  /** When WeChat Pay took the money (its time_end), for a paid sale; the business day the bill files it under. */
  paidAt: number | null;
  createdAt: number;
  updatedAt: number;
}

/** A business day WeChat Pay's bill could not reconcile yet: since when it is tried, the last try and why. */
export interface PendingReconciliation {
  day: string;
  since: number;
  at: number;
  tries: number;
  reason: string;
}

/** A day's reconciliation against WeChat Pay's bill, as kept (result: the report as JSON). */
export interface Reconciliation {
  day: string;
  at: number;
  matched: number;
  discrepancies: number;
  result: string;
}

export interface SaleEvent {
  id: number;
  saleId: number;
  at: number;
  kind: string;
  detail: string;
}

/** Any subset, written in the same transaction as the change it goes with. */
export interface SalePatch {
  codeMasked?: string | null;
  transactionId?: string | null;
  finalCode?: string | null;
  finalText?: string | null;
  reverseReason?: string | null;
  reverseAttempts?: number;
  nextReverseAt?: number | null;
  submittedAt?: number | null;
  paidAt?: number | null;
}

export interface JournalOptions {
  /** 1-16 of [A-Za-z0-9]; prefixes every out_trade_no. */
  deviceId: string;
  clock: Clock;
  /** Technician commands read while the daemon writes: no pragmas that write, no migrations. */
  readonly?: boolean;
  /** For tests: PRAGMA max_page_count, to produce a real SQLITE_FULL. */
  maxPageCount?: number;
}

/** What the connection really runs with, read back from SQLite (for selftest and tests). */
export interface JournalPragmas {
  journalMode: string;
  synchronous: 'OFF' | 'NORMAL' | 'FULL' | 'EXTRA';
  foreignKeys: boolean;
  busyTimeout: number;
  /** PRAGMA cache_size as SQLite reports it (negative: KiB). */
  cacheSize: number;
  userVersion: number;
}

interface SaleRow {
  id: number;
  ref: string;
  amount_fen: number;
  out_trade_no: string;
  state: SaleState;
  code_masked: string | null;
  transaction_id: string | null;
  final_code: string | null;
  final_text: string | null;
  reverse_reason: string | null;
  reverse_attempts: number;
  next_reverse_at: number | null;
  submitted_at: number | null;
  paid_at: number | null;
  created_at: number;
  updated_at: number;
}

interface EventRow {
  id: number;
  sale_id: number;
  at: number;
  kind: string;
  detail: string;
}

interface EventInput {
  kind: string;
  detail: string;
}

const TAG = /^[A-Z0-9]{4}$/;
/** A masked code keeps 2 + 4 digits; 7 digits in a row can only be (part of) a full payment code. */
const DIGIT_RUN = /[0-9]{7}/;
const OUT_TRADE_NO_MAX = 32;
const BUSY_TIMEOUT_MS = 5000;
/**
 * Negative: KiB rather than pages. 512 KiB: the cache holds whatever pages were read last and never gives
 * them back, so until the journal outgrows it the daemon's memory grows with the journal. At 2 MB the bench
 * (an empty journal, ~0.6 MB per 1,000 sales) saw glibc's heap grow 1.5 MB between sales 3,500 and 4,000
 * and the 1 MB growth target from sale 2,000 to 10,000 missed (+2.0 MB); at 512 KiB the cache is full
 * before sale 1,000, the heap stayed flat from there (+0.5 MB overall, V8's old space) and neither the
 * sales' overhead nor the start-up on a 200,000-sale journal (510-560 ms either way) changed measurably:
 * a sale touches the right edge of each b-tree and one index path, and what falls out of the cache is read
 * back from the kernel's page cache.
 */
const CACHE_SIZE = -512;
const SYNCHRONOUS = ['OFF', 'NORMAL', 'FULL', 'EXTRA'] as const;

const PATCH_COLUMNS = {
  codeMasked: 'code_masked',
  transactionId: 'transaction_id',
  finalCode: 'final_code',
  finalText: 'final_text',
  reverseReason: 'reverse_reason',
  reverseAttempts: 'reverse_attempts',
  nextReverseAt: 'next_reverse_at',
  submittedAt: 'submitted_at',
  paidAt: 'paid_at',
} as const satisfies Record<keyof SalePatch, keyof SaleRow>;

type PatchKey = keyof typeof PATCH_COLUMNS;
const TEXT_FIELDS = new Set<PatchKey>(['codeMasked', 'transactionId', 'finalCode', 'finalText', 'reverseReason']);
const TIME_FIELDS = new Set<PatchKey>(['nextReverseAt', 'submittedAt', 'paidAt']);

function toSale(row: SaleRow): Sale {
  return {
    id: row.id,
    ref: row.ref,
    amountFen: row.amount_fen,
    outTradeNo: row.out_trade_no,
    state: row.state,
    codeMasked: row.code_masked,
    transactionId: row.transaction_id,
    finalCode: row.final_code,
    finalText: row.final_text,
    reverseReason: row.reverse_reason,
    reverseAttempts: row.reverse_attempts,
    nextReverseAt: row.next_reverse_at,
    submittedAt: row.submitted_at,
    paidAt: row.paid_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function toEvent(row: EventRow): SaleEvent {
  return { id: row.id, saleId: row.sale_id, at: row.at, kind: row.kind, detail: row.detail };
}

function checkCodeMasked(value: string | null): void {
  // The message never repeats the value: it may be a full payment code.
  if (value !== null && DIGIT_RUN.test(value)) {
    throw new TypeError('codeMasked holds a run of 7 or more digits: store the masked code, never the full payment code');
  }
}

/** Checks a patch before any transaction starts, so a bad patch writes nothing. */
function checkPatch(patch: SalePatch): void {
  if (typeof patch !== 'object' || patch === null) throw new TypeError('patch must be an object');
  for (const [key, value] of Object.entries(patch)) {
    if (!Object.hasOwn(PATCH_COLUMNS, key)) throw new TypeError(`patch has an unknown field: ${key}`);
    if (value === undefined) continue;
    const field = key as PatchKey;
    if (TEXT_FIELDS.has(field)) {
      if (value !== null && typeof value !== 'string') throw new TypeError(`patch.${field} must be a string or null`);
      if (field === 'codeMasked') checkCodeMasked(value as string | null);
    } else if (TIME_FIELDS.has(field)) {
      if (value !== null && !Number.isSafeInteger(value)) throw new TypeError(`patch.${field} must be integer ms or null`);
    } else if (!Number.isSafeInteger(value) || (value as number) < 0) {
      throw new TypeError(`patch.${field} must be an integer >= 0`);
    }
  }
}

function checkEvent(event: EventInput): void {
  if (typeof event !== 'object' || event === null) throw new TypeError('event must be { kind, detail }');
  if (typeof event.kind !== 'string' || event.kind === '') throw new TypeError('event kind must be a non-empty string');
  if (typeof event.detail !== 'string') throw new TypeError('event detail must be a string');
}

function checkCount(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new TypeError(`${name} must be an integer >= 0`);
}

function merge(row: SaleRow, patch: SalePatch): SaleRow {
  const next = { ...row } as Record<string, unknown>;
  for (const key of Object.keys(PATCH_COLUMNS) as PatchKey[]) {
    const value = patch[key];
    if (value !== undefined) next[PATCH_COLUMNS[key]] = value;
  }
  return next as unknown as SaleRow;
}

/**
 * SQLite and file system errors as JournalErrors with words a technician can act on. Anything else (a
 * TypeError, a constraint a bug ran into) passes unchanged: it is not the disk's fault.
 */
function toJournalError(err: unknown, file: string, action: string): unknown {
  if (err instanceof JournalError) return err;
  const code = errnoOf(err);
  if (code === undefined) return err;
  const why = messageOf(err);
  if (code === 'SQLITE_FULL' || code === 'ENOSPC') {
    return new JournalError(
      'FULL',
      `journal ${file} is full (disk full or size limit reached): ${action} was not written (${why})`,
      { cause: err },
    );
  }
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') {
    return new JournalError(
      'CORRUPT',
      `journal ${file} is damaged (${why}): sales are refused; keep the file for inspection, do not delete it`,
      { cause: err },
    );
  }
  if (code.startsWith('SQLITE_READONLY') || code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return new JournalError(
      'READONLY',
      `journal ${file} cannot be written (${why}): check the owner and permissions of the file and its directory, ` +
        'and that the disk is not mounted read-only',
      { cause: err },
    );
  }
  if (code.startsWith('SQLITE_CANTOPEN')) {
    return new JournalError('IO', `journal ${file} cannot be opened (${why}): check that the path and its directory exist`, {
      cause: err,
    });
  }
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return new JournalError('IO', `journal ${file} is locked by another process: ${action} failed (${why})`, { cause: err });
  }
  if (code.startsWith('SQLITE_IOERR') || code.startsWith('SQLITE_PROTOCOL') || /^E[A-Z]+$/.test(code)) {
    return new JournalError('IO', `journal ${file}: ${action} failed with a disk error (${why})`, { cause: err });
  }
  return err;
}

/** The parent directory must exist (the journal does not guess where a state directory should be). */
function checkLocation(file: string, readonly: boolean): void {
  const dir = nodePath.dirname(nodePath.resolve(file));
  let dirStat: fs.Stats;
  try {
    dirStat = fs.statSync(dir);
  } catch (err) {
    const code = errnoOf(err);
    if (code === 'ENOENT') throw new JournalError('IO', `journal directory ${dir} does not exist (journal ${file})`);
    if (code === 'ENOTDIR') throw new JournalError('IO', `journal directory ${dir} is not a directory (journal ${file})`);
    throw toJournalError(err, file, 'open');
  }
  if (!dirStat.isDirectory()) throw new JournalError('IO', `journal directory ${dir} is not a directory (journal ${file})`);

  let fileStat: fs.Stats | undefined;
  try {
    fileStat = fs.statSync(file);
  } catch (err) {
    if (errnoOf(err) !== 'ENOENT') throw toJournalError(err, file, 'open');
  }
  if (fileStat?.isDirectory()) throw new JournalError('IO', `journal ${file} is a directory, not a file`);

  if (readonly) {
    if (fileStat === undefined) throw new JournalError('NOT_FOUND', `journal ${file} does not exist (has the daemon run yet?)`);
    return;
  }
  try {
    // SQLite creates FILE-wal and FILE-shm beside the journal, so the directory must be writable too.
    fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
  } catch (err) {
    throw new JournalError(
      'READONLY',
      `journal directory ${dir} is not writable by this user (uid ${process.getuid?.() ?? '?'}): ` +
        `the journal ${file} and its -wal and -shm files live there`,
      { cause: err },
    );
  }
  if (fileStat !== undefined) {
    try {
      fs.accessSync(file, fs.constants.R_OK | fs.constants.W_OK);
    } catch (err) {
      throw new JournalError(
        'READONLY',
        `journal ${file} is not readable and writable by this user (uid ${process.getuid?.() ?? '?'})`,
        { cause: err },
      );
    }
  }
}

/** Refuses a file that is not a sound journal, before anything could write to it. */
function checkIntegrity(db: SqliteDatabase, file: string): void {
  const problems = (db.pragma('quick_check') as { quick_check: string }[]).map((r) => r.quick_check);
  if (problems.length !== 1 || problems[0] !== 'ok') {
    throw new JournalError(
      'CORRUPT',
      `journal ${file} failed its integrity check (${problems.slice(0, 5).join('; ')}): sales are refused; ` +
        'keep the file for inspection, do not delete it',
    );
  }
}

function userVersion(db: SqliteDatabase): number {
  return db.pragma('user_version', { simple: true }) as number;
}

function checkVersion(version: number, file: string): void {
  if (version > SCHEMA_VERSION) {
    throw new JournalError(
      'IO',
      `journal ${file} was written by a newer scanbox (schema ${version}; this one knows up to ${SCHEMA_VERSION})`,
    );
  }
}

/** A newer schema or somebody else's SQLite file is refused before anything (even WAL mode) is written. */
function checkSchema(db: SqliteDatabase, file: string): number {
  const version = userVersion(db);
  checkVersion(version, file);
  if (version === 0) {
    const objects = db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").get() as {
      n: number;
    };
    if (objects.n > 0) {
      throw new JournalError('CORRUPT', `${file} is an SQLite database but not a scanbox journal: refusing to touch it`);
    }
  }
  return version;
}

function migrate(db: SqliteDatabase, file: string): void {
  // IMMEDIATE and the version read inside: two processes opening a new file at once migrate it once.
  db.transaction(() => {
    const from = checkSchema(db, file);
    if (from === SCHEMA_VERSION) return;
    for (let version = from; version < SCHEMA_VERSION; version++) MIGRATIONS[version]!(db);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}

const SALE_COLUMNS = `id, ref, amount_fen, out_trade_no, state, code_masked, transaction_id, final_code, final_text,
  reverse_reason, reverse_attempts, next_reverse_at, submitted_at, paid_at, created_at, updated_at`;

export class Journal {
  readonly path: string;
  readonly tag: string;
  /** The refunds of this journal's sales (refunds.ts). */
  readonly refunds: RefundBook;

  private readonly db: SqliteDatabase;
  private readonly clock: Clock;
  private readonly deviceId: string;
  private readonly readonly: boolean;

  private readonly stmt: {
    insertSale: Statement<[string, number, number, number]>;
    setOutTradeNo: Statement<[string, number]>;
    writeSale: Statement<[Record<string, unknown>]>;
    insertEvent: Statement<[number, number, string, string]>;
    getSale: Statement<[number], SaleRow>;
    byOutTradeNo: Statement<[string], SaleRow>;
    latestByRef: Statement<[string], SaleRow>;
    byRef: Statement<[string], SaleRow>;
    unfinished: Statement<[], SaleRow>;
    pendingReversals: Statement<[], SaleRow>;
    refusedReversals: Statement<[], SaleRow>;
    recent: Statement<[number], SaleRow>;
    events: Statement<[number], EventRow>;
    counts: Statement<[], { state: SaleState; n: number }>;
    paidBetween: Statement<[number, number], { n: number; fen: number }>;
    paidSalesBetween: Statement<[number, number], SaleRow>;
    touchedBetween: Statement<[number, number, number, number], SaleRow>;
    prune: Statement<[number, number]>;
  };

  private readonly txCreate: (ref: string, amountFen: number) => Sale;
  private readonly txChange: (saleId: number, to: SaleState | null, patch: SalePatch, event?: EventInput) => Sale;
  private readonly txEvent: (saleId: number, kind: string, detail: string) => void;
  private readonly txPrune: (olderThanMs: number, batchSize: number) => number;

  static open(path: string, options: JournalOptions): Journal {
    if (typeof path !== 'string' || path === '') throw new TypeError('journal path must be a non-empty string');
    if (typeof options?.deviceId !== 'string' || !DEVICE_ID.test(options.deviceId)) {
      throw new TypeError(`deviceId must be ${DEVICE_ID_RULE}`);
    }
    if (typeof options.clock?.now !== 'function') throw new TypeError('clock is required');
    const { maxPageCount } = options;
    if (maxPageCount !== undefined && (!Number.isSafeInteger(maxPageCount) || maxPageCount < 1)) {
      throw new TypeError('maxPageCount must be a positive integer');
    }
    const readonly = options.readonly === true;

    checkLocation(path, readonly);
    let db: SqliteDatabase;
    try {
      db = readonly ? new Database(path, { readonly: true, fileMustExist: true }) : new Database(path);
    } catch (err) {
      throw toJournalError(err, path, 'open');
    }
    try {
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      // A small page cache, set before quick_check reads the whole file: better-sqlite3 builds SQLite with a
      // 16 MB default, which quick_check fills at start on a year's journal and which then stays allocated for
      // the life of the daemon, most of its memory over the 80 MB budget. The journal's hot pages fit in 512 KiB.
      db.pragma(`cache_size = ${CACHE_SIZE}`);
      // First read of the file, before any pragma or migration that could write to it.
      checkIntegrity(db, path);
      const version = checkSchema(db, path);
      if (readonly) {
        if (version === 0) throw new JournalError('NOT_FOUND', `${path} is not a scanbox journal yet (no schema)`);
      } else {
        const mode = db.pragma('journal_mode = WAL', { simple: true }) as string;
        if (mode !== 'wal') {
          throw new JournalError('IO', `journal ${path} cannot use WAL mode (got ${mode}): is it on a network file system?`);
        }
        // better-sqlite3 leaves WAL at NORMAL, which can lose the last commits on power loss.
        db.pragma('synchronous = FULL');
        db.pragma('foreign_keys = ON');
        migrate(db, path);
        if (maxPageCount !== undefined) db.pragma(`max_page_count = ${maxPageCount}`);
      }
      const tagRow = db.prepare("SELECT value FROM meta WHERE key = 'tag'").get() as { value: string } | undefined;
      if (tagRow === undefined || !TAG.test(tagRow.value)) {
        throw new JournalError('CORRUPT', `journal ${path} has no valid tag in its meta table`);
      }
      return new Journal(db, path, tagRow.value, options.deviceId, options.clock, readonly);
    } catch (err) {
      db.close();
      throw toJournalError(err, path, 'open');
    }
  }

  private constructor(
    db: SqliteDatabase,
    path: string,
    tag: string,
    deviceId: string,
    clock: Clock,
    readonly: boolean,
  ) {
    this.db = db;
    this.path = path;
    this.tag = tag;
    this.deviceId = deviceId;
    this.clock = clock;
    this.readonly = readonly;
    this.refunds = new RefundBook({
      db,
      path,
      prefix: `${deviceId}${tag}`,
      now: () => this.now(),
      write: (action, fn) => this.write(action, fn),
      read: (action, fn) => this.read(action, fn),
    });

    // A journal read (read-only, by a technician's command) before the daemon brought it to schema 3 has no
    // paid_at column yet: it reads as NULL, and a sale's paid time is then when its row last changed.
    const hasPaidAt =
      (db.prepare("SELECT count(*) AS n FROM pragma_table_info('sales') WHERE name = 'paid_at'").get() as { n: number }).n === 1;
    const cols = hasPaidAt ? SALE_COLUMNS : SALE_COLUMNS.replace('paid_at', 'NULL AS paid_at');
    const paidTime = hasPaidAt ? 'coalesce(paid_at, updated_at)' : 'updated_at';
    const setPaidAt = hasPaidAt ? ', paid_at = @paid_at' : '';

    this.stmt = {
      insertSale: db.prepare(
        "INSERT INTO sales (ref, amount_fen, state, created_at, updated_at) VALUES (?, ?, 'open', ?, ?)",
      ),
      setOutTradeNo: db.prepare('UPDATE sales SET out_trade_no = ? WHERE id = ?'),
      writeSale: db.prepare(`UPDATE sales SET
          state = @state, code_masked = @code_masked, transaction_id = @transaction_id, final_code = @final_code,
          final_text = @final_text, reverse_reason = @reverse_reason, reverse_attempts = @reverse_attempts,
          next_reverse_at = @next_reverse_at, submitted_at = @submitted_at${setPaidAt}, updated_at = @updated_at
        WHERE id = @id AND state = @from`),
      insertEvent: db.prepare('INSERT INTO events (sale_id, at, kind, detail) VALUES (?, ?, ?, ?)'),
      getSale: db.prepare(`SELECT ${cols} FROM sales WHERE id = ?`),
      byOutTradeNo: db.prepare(`SELECT ${cols} FROM sales WHERE out_trade_no = ?`),
      latestByRef: db.prepare(`SELECT ${cols} FROM sales WHERE ref = ? ORDER BY id DESC LIMIT 1`),
      byRef: db.prepare(`SELECT ${cols} FROM sales WHERE ref = ? ORDER BY id`),
      unfinished: db.prepare(
        `SELECT ${cols} FROM sales WHERE state IN ('open', 'paying', 'polling', 'reversing') ORDER BY id`,
      ),
      pendingReversals: db.prepare(
        `SELECT ${cols} FROM sales WHERE state = 'reversing' ORDER BY next_reverse_at ASC NULLS FIRST, id`,
      ),
      refusedReversals: db.prepare(`SELECT ${cols} FROM sales WHERE state = 'reverse_failed' ORDER BY id`),
      recent: db.prepare(`SELECT ${cols} FROM sales ORDER BY id DESC LIMIT ?`),
      events: db.prepare('SELECT id, sale_id, at, kind, detail FROM events WHERE sale_id = ? ORDER BY id'),
      counts: db.prepare('SELECT state, count(*) AS n FROM sales GROUP BY state'),
      // paid_at is WeChat Pay's time of payment (as its bill files it); a sale paid before it was kept was last
      // changed by its transition to paid.
      paidBetween: db.prepare(
        `SELECT count(*) AS n, coalesce(sum(amount_fen), 0) AS fen FROM sales WHERE state = 'paid' AND ${paidTime} >= ? AND ${paidTime} < ?`,
      ),
      paidSalesBetween: db.prepare(
        `SELECT ${cols} FROM sales WHERE state = 'paid' AND ${paidTime} >= ? AND ${paidTime} < ? ORDER BY id`,
      ),
      touchedBetween: db.prepare(
        `SELECT ${cols} FROM sales WHERE (created_at >= ? AND created_at < ?) OR (updated_at >= ? AND updated_at < ?) ORDER BY id`,
      ),
      // reverse_failed is left out on purpose: a technician still needs its whole history.
      prune: db.prepare(`DELETE FROM events WHERE id IN (
          SELECT e.id FROM events e JOIN sales s ON s.id = e.sale_id
          WHERE s.state IN ('paid', 'failed', 'reversed') AND s.updated_at < ?
          ORDER BY e.id LIMIT ?)`),
    };

    this.txCreate = db.transaction((ref: string, amountFen: number): Sale => {
      const now = this.now();
      const id = Number(this.stmt.insertSale.run(ref, amountFen, now, now).lastInsertRowid);
      const outTradeNo = `${this.deviceId}${this.tag}${String(id).padStart(8, '0')}`;
      if (outTradeNo.length > OUT_TRADE_NO_MAX) {
        throw new JournalError('FULL', `journal ${this.path}: sale ids no longer fit a ${OUT_TRADE_NO_MAX}-char out_trade_no`);
      }
      this.stmt.setOutTradeNo.run(outTradeNo, id);
      this.stmt.insertEvent.run(id, now, 'created', `ref=${ref} amount=${formatYuan(amountFen)} out_trade_no=${outTradeNo}`);
      return toSale(this.row(id));
    }).immediate;

    this.txChange = db.transaction((saleId: number, to: SaleState | null, patch: SalePatch, event?: EventInput): Sale => {
      const row = this.stmt.getSale.get(saleId);
      if (row === undefined) throw new JournalError('NOT_FOUND', `no sale with id ${saleId} in journal ${this.path}`);
      const target = to ?? row.state;
      if (to !== null && !canTransition(row.state, to)) {
        throw new JournalError(
          'BAD_TRANSITION',
          `sale ${saleId} (${row.out_trade_no}) cannot go from ${row.state} to ${String(to)}`,
        );
      }
      const now = this.now();
      const next = merge(row, patch);
      const { changes } = this.stmt.writeSale.run({ ...next, state: target, updated_at: now, id: saleId, from: row.state });
      if (changes !== 1) {
        throw new JournalError('BAD_TRANSITION', `sale ${saleId} changed state underneath (was ${row.state})`);
      }
      if (event !== undefined) this.stmt.insertEvent.run(saleId, now, event.kind, event.detail);
      return toSale(this.row(saleId));
    }).immediate;

    this.txEvent = db.transaction((saleId: number, kind: string, detail: string): void => {
      if (this.stmt.getSale.get(saleId) === undefined) {
        throw new JournalError('NOT_FOUND', `no sale with id ${saleId} in journal ${this.path}`);
      }
      this.stmt.insertEvent.run(saleId, this.now(), kind, detail);
    }).immediate;

    this.txPrune = db.transaction(
      (olderThanMs: number, batchSize: number): number => this.stmt.prune.run(olderThanMs, batchSize).changes,
    ).immediate;
  }

  /** ONE transaction: the sale in state 'open' and its 'created' event. */
  createSale(ref: string, amountFen: number): Sale {
    if (typeof ref !== 'string' || ref === '') throw new TypeError('ref must be a non-empty string');
    if (!Number.isSafeInteger(amountFen) || amountFen <= 0) throw new TypeError('amountFen must be an integer > 0');
    return this.write('create a sale', () => this.txCreate(ref, amountFen));
  }

  /**
   * ONE transaction: the state change (only along states.ts, guarded by the current state), the patch and
   * the event. A refused transition writes nothing.
   */
  transition(saleId: number, to: SaleState, patch: SalePatch, event: { kind: string; detail: string }): Sale {
    checkPatch(patch);
    checkEvent(event);
    return this.write(`move sale ${saleId} to ${String(to)}`, () => this.txChange(saleId, to, patch, event));
  }

  /** ONE transaction: a change within the same state (e.g. the reversal counters), with an optional event. */
  update(saleId: number, patch: SalePatch, event?: { kind: string; detail: string }): Sale {
    checkPatch(patch);
    if (event !== undefined) checkEvent(event);
    return this.write(`update sale ${saleId}`, () => this.txChange(saleId, null, patch, event));
  }

  addEvent(saleId: number, kind: string, detail: string): void {
    checkEvent({ kind, detail });
    this.write(`add an event to sale ${saleId}`, () => this.txEvent(saleId, kind, detail));
  }

  get(id: number): Sale | undefined {
    return this.read('read a sale', () => {
      const row = this.stmt.getSale.get(id);
      return row && toSale(row);
    });
  }

  byOutTradeNo(outTradeNo: string): Sale | undefined {
    return this.read('read a sale', () => {
      const row = this.stmt.byOutTradeNo.get(outTradeNo);
      return row && toSale(row);
    });
  }

  /** The newest attempt for a register ref. */
  /** Every attempt for one register REF, oldest first. */
  byRef(ref: string): Sale[] {
    return this.read('read sales', () => this.stmt.byRef.all(ref).map(toSale));
  }

  latestByRef(ref: string): Sale | undefined {
    return this.read('read a sale', () => {
      const row = this.stmt.latestByRef.get(ref);
      return row && toSale(row);
    });
  }

  /** Sales recovery must finish before new sales are taken, oldest first. */
  unfinished(): Sale[] {
    return this.read('list unfinished sales', () => this.stmt.unfinished.all().map(toSale));
  }

  /** The reversal queue: never-tried first, then by back-off deadline. */
  pendingReversals(): Sale[] {
    return this.read('list pending reversals', () => this.stmt.pendingReversals.all().map(toSale));
  }

  /** Sales whose reversal WeChat Pay refused for good (REVERSE_EXPIRE ...): money it may keep, oldest first. */
  refusedReversals(): Sale[] {
    return this.read('list refused reversals', () => this.stmt.refusedReversals.all().map(toSale));
  }

  /** Newest first. */
  recent(limit: number): Sale[] {
    checkCount('limit', limit);
    return this.read('list recent sales', () => this.stmt.recent.all(limit).map(toSale));
  }

  events(saleId: number): SaleEvent[] {
    return this.read('read events', () => this.stmt.events.all(saleId).map(toEvent));
  }

  counts(): Record<SaleState, number> {
    return this.read('count sales', () => {
      const counts = Object.fromEntries(SALE_STATES.map((s) => [s, 0])) as Record<SaleState, number>;
      for (const { state, n } of this.stmt.counts.all()) counts[state] = n;
      return counts;
    });
  }

  /** Sales paid (and still paid) in [startMs, endMs): how many, and their fen. */
  paidBetween(startMs: number, endMs: number): { count: number; fen: number } {
    return this.read('count paid sales', () => {
      const row = this.stmt.paidBetween.get(startMs, endMs)!;
      return { count: row.n, fen: row.fen };
    });
  }

  /** The sales paid (and still paid) in [startMs, endMs), oldest first. */
  paidSalesBetween(startMs: number, endMs: number): Sale[] {
    return this.read('list paid sales', () => this.stmt.paidSalesBetween.all(startMs, endMs).map(toSale));
  }

  /** The same, one at a time, for a busy day's thousands of sales: none is kept after `fn` has seen it. */
  eachPaidSaleBetween(startMs: number, endMs: number, fn: (sale: Sale) => void): void {
    this.read('list paid sales', () => {
      for (const row of this.stmt.paidSalesBetween.iterate(startMs, endMs)) fn(toSale(row));
    });
  }

  /** Every sale opened or changed in [startMs, endMs), oldest first: a business day's activity. */
  touchedBetween(startMs: number, endMs: number): Sale[] {
    return this.read('list sales', () => this.stmt.touchedBetween.all(startMs, endMs, startMs, endMs).map(toSale));
  }

  /**
   * Deletes at most `batchSize` events of settled sales (paid, failed, reversed) last changed before
   * `olderThanMs`, in one transaction, so the SD card sees small writes. Sale rows stay: idempotency by ref
   * needs them. Returns how many events went.
   */
  prune(olderThanMs: number, batchSize: number): number {
    if (!Number.isFinite(olderThanMs)) throw new TypeError('olderThanMs must be a number of wall ms');
    checkCount('batchSize', batchSize);
    if (batchSize === 0) return 0;
    return this.write('prune old events', () => this.txPrune(olderThanMs, batchSize));
  }

  /** ONE transaction: a day's reconciliation result, replacing an earlier one of the same day; the day is no longer pending. */
  saveReconciliation(record: Reconciliation): void {
    if (!/^[0-9]{8}$/.test(record.day)) throw new TypeError('day must be YYYYMMDD');
    this.write(`keep the reconciliation of ${record.day}`, () => {
      this.db
        .prepare('INSERT OR REPLACE INTO reconciliations (day, at, matched, discrepancies, result) VALUES (?, ?, ?, ?, ?)')
        .run(record.day, record.at, record.matched, record.discrepancies, record.result);
      this.db.prepare('DELETE FROM reconcile_pending WHERE day = ?').run(record.day);
    });
  }

  /** ONE transaction: the day could not be reconciled now (the bill not made, not reachable, not whole), and why. */
  notReconciled(day: string, at: number, reason: string): void {
    if (!/^[0-9]{8}$/.test(day)) throw new TypeError('day must be YYYYMMDD');
    if (reason === '') throw new TypeError('a reason is needed');
    this.write(`note that ${day} is not reconciled`, () =>
      this.db
        .prepare(
          'INSERT INTO reconcile_pending (day, since, at, tries, reason) VALUES (?, ?, ?, 1, ?) ' +
            'ON CONFLICT (day) DO UPDATE SET at = excluded.at, tries = tries + 1, reason = excluded.reason',
        )
        .run(day, at, at, reason.slice(0, 500)),
    );
  }

  /** The days of [fromDay, toDay] (YYYYMMDD) that have a kept reconciliation; none for a journal older than reconciliation. */
  reconciledDays(fromDay: string, toDay: string): Set<string> {
    return this.read('list the reconciled days', () => {
      if (!this.hasTable('reconciliations')) return new Set<string>();
      const rows = this.db.prepare('SELECT day FROM reconciliations WHERE day >= ? AND day <= ?').all(fromDay, toDay) as { day: string }[];
      return new Set(rows.map((r) => r.day));
    });
  }

  /** Why a day is not reconciled yet, as last noted; null when it was never tried (or the journal is older than that). */
  pendingReconciliation(day: string): PendingReconciliation | null {
    return this.read('read a pending reconciliation', () => {
      if (!this.hasTable('reconcile_pending')) return null;
      const row = this.db.prepare('SELECT day, since, at, tries, reason FROM reconcile_pending WHERE day = ?').get(day) as PendingReconciliation | undefined;
      return row ?? null;
    });
  }

  /** When the journal's first sale was opened (wall ms), or null when it has none: where a catch-up starts. */
  firstSaleAt(): number | null {
    return this.read('read the first sale', () => {
      const row = this.db.prepare('SELECT min(created_at) AS at FROM sales').get() as { at: number | null };
      return row.at;
    });
  }

  /** The newest reconciliation (by the day it reconciled), or null; null too for a journal older than reconciliation. */
  latestReconciliation(): Reconciliation | null {
    return this.read('read the last reconciliation', () => {
      if (!this.hasTable('reconciliations')) return null;
      const row = this.db.prepare('SELECT day, at, matched, discrepancies, result FROM reconciliations ORDER BY day DESC LIMIT 1').get() as
        | Reconciliation
        | undefined;
      return row ?? null;
    });
  }

  private hasTable(name: string): boolean {
    return (this.db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) as { n: number }).n === 1;
  }

  /** 'ok', or what SQLite found wrong. */
  quickCheck(): string {
    try {
      const rows = this.db.pragma('quick_check') as { quick_check: string }[];
      return rows.map((r) => r.quick_check).join('; ');
    } catch (err) {
      return messageOf(err);
    }
  }

  pragmas(): JournalPragmas {
    return this.read('read pragmas', () => ({
      journalMode: this.db.pragma('journal_mode', { simple: true }) as string,
      synchronous: SYNCHRONOUS[this.db.pragma('synchronous', { simple: true }) as number] ?? 'OFF',
      foreignKeys: this.db.pragma('foreign_keys', { simple: true }) === 1,
      busyTimeout: this.db.pragma('busy_timeout', { simple: true }) as number,
      cacheSize: this.db.pragma('cache_size', { simple: true }) as number,
      userVersion: userVersion(this.db),
    }));
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private now(): number {
    return Math.floor(this.clock.now());
  }

  private row(id: number): SaleRow {
    const row = this.stmt.getSale.get(id);
    if (row === undefined) throw new JournalError('NOT_FOUND', `no sale with id ${id} in journal ${this.path}`);
    return row;
  }

  private write<T>(action: string, fn: () => T): T {
    if (this.readonly) throw new JournalError('READONLY', `journal ${this.path} is open read-only: cannot ${action}`);
    try {
      return fn();
    } catch (err) {
      throw toJournalError(err, this.path, action);
    }
  }

  private read<T>(action: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw toJournalError(err, this.path, action);
    }
  }
}
