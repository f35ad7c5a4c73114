/**
 * The journal's schema, one step per `PRAGMA user_version`. A step, once shipped, is never edited: a box in
 * the field may be at any version, and the next daemon must bring it forward from exactly what that step made.
 * Each step runs with the `user_version` bump in one transaction, so a power cut leaves the old or the new
 * schema, never half of one.
 */
import { randomInt } from 'node:crypto';
import type { Database } from 'better-sqlite3';

export type Migration = (db: Database) => void;

const TAG_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

/**
 * 4 random characters of [A-Z0-9], made once per journal file. They sit between the device id and the sale
 * id in every out_trade_no, so a journal that is lost and made again (a new SD card, a deleted file) does not
 * hand out the out_trade_nos of the old one again: WeChat Pay would take them for the old orders.
 */
export function newTag(): string {
  let tag = '';
  for (let i = 0; i < 4; i++) tag += TAG_ALPHABET[randomInt(TAG_ALPHABET.length)];
  return tag;
}

export const MIGRATIONS: readonly Migration[] = [
  // 1: meta, sales, events.
  (db) => {
    db.exec(`
      CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
      ) STRICT;

      -- AUTOINCREMENT: an id is never handed out twice, even after the newest rows were deleted, because the
      -- id is the sequence behind out_trade_no.
      -- out_trade_no is NULL only inside the transaction that creates the row (it is made from the new id).
      CREATE TABLE sales (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        ref              TEXT NOT NULL CHECK (length(ref) > 0),
        amount_fen       INTEGER NOT NULL CHECK (amount_fen > 0),
        out_trade_no     TEXT UNIQUE,
        state            TEXT NOT NULL CHECK (state IN
                           ('open', 'paying', 'polling', 'reversing', 'paid', 'failed', 'reversed', 'reverse_failed')),
        code_masked      TEXT,
        transaction_id   TEXT,
        final_code       TEXT,
        final_text       TEXT,
        reverse_reason   TEXT,
        reverse_attempts INTEGER NOT NULL DEFAULT 0 CHECK (reverse_attempts >= 0),
        next_reverse_at  INTEGER,
        submitted_at     INTEGER,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL
      ) STRICT;

      CREATE INDEX sales_ref ON sales (ref, id);
      CREATE INDEX sales_state ON sales (state);

      CREATE TABLE events (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        sale_id INTEGER NOT NULL REFERENCES sales (id),
        at      INTEGER NOT NULL,
        kind    TEXT NOT NULL CHECK (length(kind) > 0),
        detail  TEXT NOT NULL
      ) STRICT;

      CREATE INDEX events_sale ON events (sale_id, id);
    `);
    db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run('tag', newTag());
  },
  // 2: refunds and their events. Every sale of a journal at version 1 is kept as it is.
  (db) => {
    db.exec(`
      -- rid: the register's (or technician's) refund reference, the idempotency key, unique for ever.
      -- out_refund_no is NULL only inside the transaction that creates the row (it is made from the new id);
      -- AUTOINCREMENT so an id, and with it an out_refund_no, is never handed out twice.
      CREATE TABLE refunds (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        rid             TEXT NOT NULL UNIQUE CHECK (length(rid) > 0),
        sale_id         INTEGER NOT NULL REFERENCES sales (id),
        amount_fen      INTEGER NOT NULL CHECK (amount_fen > 0),
        out_refund_no   TEXT UNIQUE,
        source          TEXT NOT NULL CHECK (source IN ('register', 'technician')),
        state           TEXT NOT NULL CHECK (state IN
                          ('requested', 'submitted', 'accepted', 'succeeded', 'closed', 'change', 'failed')),
        refund_id       TEXT,
        final_code      TEXT,
        final_text      TEXT,
        attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        next_attempt_at INTEGER,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
      ) STRICT;

      CREATE INDEX refunds_sale ON refunds (sale_id, id);
      CREATE INDEX refunds_state ON refunds (state);
      CREATE INDEX refunds_created ON refunds (created_at);

      CREATE TABLE refund_events (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        refund_id INTEGER NOT NULL REFERENCES refunds (id),
        at        INTEGER NOT NULL,
        kind      TEXT NOT NULL CHECK (length(kind) > 0),
        detail    TEXT NOT NULL
      ) STRICT;

      CREATE INDEX refund_events_refund ON refund_events (refund_id, id);
    `);
  },
  // 3: when WeChat Pay took the money (its time_end: the day its bill files the sale under), and the kept
  // result of each day's reconciliation against that bill.
  (db) => {
    db.exec(`
      ALTER TABLE sales ADD COLUMN paid_at INTEGER;

      CREATE TABLE reconciliations (
        day           TEXT PRIMARY KEY CHECK (length(day) = 8),
        at            INTEGER NOT NULL,
        matched       INTEGER NOT NULL CHECK (matched >= 0),
        discrepancies INTEGER NOT NULL CHECK (discrepancies >= 0),
        result        TEXT NOT NULL
      ) STRICT;
    `);
  },
  // 4: the business days WeChat Pay's bill could not reconcile yet, and why (not made yet, not reachable, not
  // whole): `scanbox status` shows the oldest. A day leaves this table in the transaction that keeps its
  // reconciliation; a day in neither table and inside the catch-up window was simply not tried yet.
  (db) => {
    db.exec(`
      CREATE TABLE reconcile_pending (
        day    TEXT PRIMARY KEY CHECK (length(day) = 8),
        since  INTEGER NOT NULL,
        at     INTEGER NOT NULL,
        tries  INTEGER NOT NULL CHECK (tries > 0),
        reason TEXT NOT NULL CHECK (length(reason) > 0)
      ) STRICT;
    `);
  },
];

export const SCHEMA_VERSION = MIGRATIONS.length;
