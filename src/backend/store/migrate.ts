import Database from 'better-sqlite3';
import { StoreError } from '../store.js';
import { truthSql } from './money.js';
import { PostgresBackendStore } from './postgres.js';

/**
 * `scanbox backend migrate --from FILE` (contract §1, §8 "A chain"): a SQLite backend journal copied into the
 * PostgreSQL database once, row for row, and checked.
 *
 * - The target must be empty (no box, certificate or call): a second run, or a run against a database in use,
 *   is refused before anything is written.
 * - Everything is copied in ONE transaction (a one-off, not a live change): a copy that fails leaves the target
 *   empty, to be run again. Rows go in batches of `batch`, call ids kept (the sequence moved past them), so the
 *   journal reads the same.
 * - Checked before the commit: for each table the count, and per column sums and counts that any lost,
 *   doubled or changed row would move (ids, times, amounts, outcomes, the text of every key), compared between
 *   the file and the transaction's view of the target. Any difference rolls everything back.
 * - The file is opened read-only; the backend using it should be stopped first (a call it makes meanwhile would
 *   be missing from the copy).
 */

export interface MigrateProgress {
  table: string;
  done: number;
  total: number;
}

export interface MigrateSummary {
  boxes: number;
  certificates: number;
  calls: number;
  ms: number;
}

const TABLES = {
  boxes: ['device_id', 'enrolled_at', 'revoked_at', 'last_seen_at', 'calls', 'errors', 'max_amount_fen', 'refunds'],
  certificates: ['serial', 'device_id', 'issued_at', 'not_after', 'revoked_at'],
  calls: ['id', 'device_id', 'call', 'out_trade_no', 'out_refund_no', 'outcome', 'code', 'state', 'amount_fen', 'paid_at', 'ms', 'at'],
  // The fleet's tables (schema step 3 here): copied when the journal has them.
  heartbeats: ['id', 'device_id', 'at', 'report'],
  admins: ['name', 'password_hash', 'created_at'],
  admin_actions: ['id', 'admin', 'action', 'device_id', 'detail', 'at'],
  // The backend's own reconciliations (schema step 4 here).
  reconciliations: ['day', 'at', 'matched', 'discrepancies'],
} as const;

/** Tables a journal of an earlier schema step lacks: nothing to copy. */
const LATER_TABLES: ReadonlySet<string> = new Set(['heartbeats', 'admins', 'admin_actions', 'reconciliations']);
/** Tables whose ids are copied, with the sequence moved past them. */
const SERIAL: ReadonlySet<string> = new Set(['calls', 'heartbeats', 'admin_actions']);

/** Columns a journal of an earlier schema step lacks: copied as NULL (the schema's own default). */
const LATER: ReadonlySet<string> = new Set(['paid_at']);

type Table = keyof typeof TABLES;
const NUMERIC = new Set(['enrolled_at', 'revoked_at', 'last_seen_at', 'calls', 'errors', 'max_amount_fen', 'issued_at', 'not_after', 'id', 'amount_fen', 'paid_at', 'ms', 'at', 'created_at', 'matched']);
const PG_TYPES: Record<string, string> = { text: 'text[]', bigint: 'bigint[]' };

/** Figures that any lost, doubled or changed row moves: the count, and per column sums and the non-null count. */
function checkSql(table: Table, pg: boolean, present: ReadonlySet<string>): string {
  const parts = ['count(*) AS n'];
  for (const c of TABLES[table].filter((c) => present.has(c))) {
    // Two exact small sums per number column (no overflow over millions of rows of epoch milliseconds).
    if (NUMERIC.has(c)) parts.push(`coalesce(sum(${c} % 1000003), 0) AS m_${c}`, `coalesce(sum(${c} / 1000003), 0) AS d_${c}`, `count(${c}) AS c_${c}`);
    else parts.push(`coalesce(sum(${pg ? `octet_length(${c})` : `length(CAST(${c} AS BLOB))`}), 0) AS s_${c}`, `count(${c}) AS c_${c}`);
  }
  return `SELECT ${parts.join(', ')} FROM ${table}`;
}

export async function migrateSqliteToPostgres(
  file: string,
  target: PostgresBackendStore,
  options: { batch?: number; progress?: (p: MigrateProgress) => void } = {},
): Promise<MigrateSummary> {
  const started = Date.now();
  const batch = options.batch ?? 5000;
  let source: Database.Database;
  try {
    source = new Database(file, { readonly: true, fileMustExist: true });
  } catch (error) {
    throw new StoreError('IO', `cannot open ${file}: ${(error as Error).message}`, { cause: error });
  }
  const sourceColumns = {} as Record<Table, Set<string>>;
  try {
    for (const table of Object.keys(TABLES) as Table[]) {
      const columns = (source.prepare(`PRAGMA table_info(${table})`).all() as Array<{ name: string }>).map((c) => c.name);
      const missing = TABLES[table].filter((c) => !columns.includes(c) && !LATER.has(c));
      sourceColumns[table] = new Set(columns);
      if (columns.length === 0 && LATER_TABLES.has(table)) continue;
      if (columns.length === 0 || missing.length > 0) {
        throw new StoreError('CORRUPT', `${file} is not a scanbox backend journal (table ${table}${columns.length === 0 ? ' is missing' : ` lacks ${missing.join(', ')}`})`);
      }
    }
    const copied = (Object.keys(TABLES) as Table[]).filter((t) => sourceColumns[t].size > 0);
    const totals = Object.fromEntries(copied.map((t) => [t, (source.prepare(`SELECT count(*) AS n FROM ${t}`).get() as { n: number }).n])) as Record<Table, number>;
    await target.schemaVersion();
    const summary = await target.db.transaction(async (q) => {
      await q('SET LOCAL statement_timeout = 0');
      await q('SET LOCAL idle_in_transaction_session_timeout = 0');
      // Nobody else writes these tables while the copy is under way (a backend started on the target waits).
      const all = Object.keys(TABLES);
      await q(`LOCK TABLE ${all.join(', ')} IN EXCLUSIVE MODE`);
      const present = await q<{ n: number }>(`SELECT ${all.map((t) => `(SELECT count(*) FROM ${t})`).join(' + ')} AS n`);
      if (present[0]!.n > 0) {
        throw new StoreError('IO', `the target database is not empty (${present[0]!.n} rows in ${all.join(', ')}): migrate copies into an empty database only, once`);
      }
      const types = await q<{ table_name: string; column_name: string; data_type: string }>(
        `SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ANY($1::text[])`,
        [all],
      );
      const typeOf = (table: string, column: string): string => PG_TYPES[types.find((r) => r.table_name === table && r.column_name === column)!.data_type]!;
      for (const table of copied) {
        const columns = TABLES[table];
        const order = SERIAL.has(table) ? 'id' : table === 'certificates' ? 'rowid' : table === 'admins' ? 'name' : table === 'reconciliations' ? 'day' : 'device_id';
        const insert = `INSERT INTO ${table} (${columns.join(', ')}) SELECT * FROM unnest(${columns.map((c, i) => `$${i + 1}::${typeOf(table, c)}`).join(', ')})`;
        let done = 0;
        options.progress?.({ table, done, total: totals[table] });
        const selected = columns.map((c) => (sourceColumns[table].has(c) ? c : 'NULL'));
        const rows = source.prepare(`SELECT ${selected.join(', ')} FROM ${table} ORDER BY ${order}`).raw().iterate() as IterableIterator<unknown[]>;
        let chunk: unknown[][] = columns.map(() => []);
        let size = 0;
        const flush = async (): Promise<void> => {
          if (size === 0) return;
          await q(insert, chunk);
          done += size;
          chunk = columns.map(() => []);
          size = 0;
          options.progress?.({ table, done, total: totals[table] });
        };
        for (const row of rows) {
          for (let i = 0; i < columns.length; i++) chunk[i]!.push(row[i]);
          if (++size >= batch) await flush();
        }
        await flush();
      }
      for (const table of SERIAL) await q(`SELECT setval(pg_get_serial_sequence('${table}', 'id'), GREATEST((SELECT max(id) FROM ${table}), 1))`);
      // Each box's newest heartbeat, which the fleet page reads (PostgreSQL keeps it apart from the history).
      if (copied.includes('heartbeats')) {
        await q(
          `INSERT INTO heartbeat_latest (device_id, heartbeat_id, at, report)
           SELECT DISTINCT ON (device_id) device_id, id, at, report FROM heartbeats ORDER BY device_id, id DESC`,
        );
      }
      // The console's money buckets (schema step 4) worked out again from the copied calls, whatever the file's
      // own hold (rows written into the file by other means would not be in them), and checked against the same
      // items worked out from the file's calls.
      await PostgresBackendStore.rebuildMoney(q);
      const items = `count(*) AS n, coalesce(sum(amount), 0) AS fen, coalesce(sum(at % 1000003), 0) AS m, coalesce(sum(at / 1000003), 0) AS d`;
      const wantMoney = source.prepare(`SELECT ${items} FROM (${truthSql('both', '1 = 1', '1 = 1')}) x`).get() as Record<string, number>;
      const gotMoney = (await q<Record<string, number>>(`SELECT ${items} FROM (SELECT amount_fen AS amount, at FROM money_items) x`, [], { long: true }))[0]!;
      const sums = (await q<Record<string, number>>(
        `SELECT (SELECT coalesce(sum(paid_count + refund_count), 0) FROM money_hours) AS h_n, (SELECT coalesce(sum(paid_fen + refund_fen), 0) FROM money_hours) AS h_fen,
                (SELECT coalesce(sum(paid_count + refund_count), 0) FROM money_days) AS d_n, (SELECT coalesce(sum(paid_fen + refund_fen), 0) FROM money_days) AS d_fen`,
        [],
        { long: true },
      ))[0]!;
      const moneyProblems = [
        ...Object.entries(wantMoney).filter(([k, v]) => Number(gotMoney[k]) !== Number(v)).map(([k, v]) => `${k}: ${String(gotMoney[k])} in the database, ${v} from the file's calls`),
        ...[sums.h_n, sums.d_n].filter((n) => Number(n) !== Number(wantMoney.n)).map((n) => `bucket count ${String(n)}, ${wantMoney.n} items`),
        ...[sums.h_fen, sums.d_fen].filter((f) => Number(f) !== Number(wantMoney.fen)).map((f) => `bucket fen ${String(f)}, ${wantMoney.fen} in the items`),
      ];
      if (moneyProblems.length > 0) throw new StoreError('CORRUPT', `the money buckets differ from ${file}'s calls (${moneyProblems[0]}): nothing was kept`);
      // The check, inside the transaction: any difference and nothing is kept.
      for (const table of copied) {
        const want = source.prepare(checkSql(table, false, sourceColumns[table])).get() as Record<string, number>;
        const got = (await q<Record<string, number>>(checkSql(table, true, sourceColumns[table]), [], { long: true }))[0]!;
        for (const [key, value] of Object.entries(want)) {
          if (Number(got[key]) !== Number(value)) {
            throw new StoreError('CORRUPT', `the copy of ${table} differs from ${file} (${key}: ${String(got[key])} in the database, ${value} in the file): nothing was kept`);
          }
        }
      }
      return { boxes: totals.boxes, certificates: totals.certificates, calls: totals.calls, ms: Date.now() - started };
    });
    return summary;
  } finally {
    source.close();
  }
}
