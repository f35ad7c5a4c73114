import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
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
import { SqliteBackendStore } from '../../../src/backend/store.js';
import { businessDay, dayBounds } from '../../../src/business-day.js';
import { createLogger } from '../../../src/log.js';
import { median, type Row } from './common.js';

/**
 * The fleet (contract §11) at a chain's scale, on the SQLite store (the PostgreSQL store is another branch's):
 *
 * - The console's fleet page with BENCH_FLEET_BOXES (3,000) boxes, each with its latest heartbeat and an hour of
 *   heartbeat history, and a day of calls (BENCH_FLEET_SALES sales per box, each a micropay, one in ten with an
 *   orderquery, and two refunds per box): the time from the request to the whole HTML, through hono's
 *   app.request with a logged-in session (no socket: the page's own cost). Median of 5 after one warm-up.
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

export async function fleetPagePhase(dir: string, progress: Progress): Promise<Row[]> {
  const path = join(dir, 'fleet.db');
  (await SqliteBackendStore.open(path).close());
  const now = Date.now();
  const { startMs } = dayBounds(businessDay(now, CHINA), CHINA);
  const span = Math.max(1, now - startMs);
  const t0 = performance.now();
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.transaction(() => {
    const box = db.prepare('INSERT INTO boxes (device_id, enrolled_at, last_seen_at, calls) VALUES (?, ?, ?, ?)');
    const cert = db.prepare('INSERT INTO certificates (serial, device_id, issued_at, not_after) VALUES (?, ?, ?, ?)');
    const call = db.prepare('INSERT INTO calls (device_id, call, out_trade_no, out_refund_no, outcome, state, amount_fen, ms, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
    const hb = db.prepare('INSERT INTO heartbeats (device_id, at, report) VALUES (?, ?, ?)');
    for (let b = 0; b < BOXES; b++) {
      const id = `SHOP${String(b).padStart(5, '0')}`;
      box.run(id, now - 86_400_000 * 30, now, SALES);
      cert.run(`c${b.toString(16).padStart(8, '0')}`, id, now - 86_400_000 * 30, now + 86_400_000 * 365);
      for (let s = 0; s < SALES; s++) {
        const at = startMs + Math.floor((span * (s + 0.5)) / SALES);
        const no = `${id}X${String(s).padStart(8, '0')}`;
        call.run(id, 'micropay', no, null, 'success', 'SUCCESS', 100 + ((b * 31 + s * 17) % 20_000), 120, at);
        if (s % 10 === 0) call.run(id, 'orderquery', no, null, 'success', 'SUCCESS', null, 40, at + 1000);
        if (s < 2) call.run(id, 'refund', no, `${id}R${s}`, 'success', 'ACCEPTED', 50, 200, at + 5000);
      }
      // The last hour of heartbeats, the newest now (the box online) or 10 minutes ago for one in 40 (offline).
      const last = b % 40 === 0 ? now - 600_000 : now - 1000;
      for (let m = 59; m >= 0; m--) hb.run(id, last - m * 60_000, JSON.stringify(report(b, last - m * 60_000)));
    }
  })();
  db.close();
  progress(`made a backend journal of ${BOXES} boxes, ${BOXES * SALES} sales today, ${BOXES * 60} heartbeats in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const store = SqliteBackendStore.open(path);
  try {
    const app = consoleApp({ listen: { host: '127.0.0.1', port: 0 }, tls: null, store, metrics: new BackendMetrics(store), revoke: async () => false, log: createLogger({ level: 'error', write: () => undefined }) });
    await store.putAdmin({ name: 'bench', passwordHash: await hashPassword('bench password'), at: now });
    const login = await app.request('/login', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'name=bench&password=bench+password' });
    const cookie = /scanbox_console=[^;]+/.exec(login.headers.get('set-cookie') ?? '')![0];
    const times: number[] = [];
    let bytes = 0;
    let ok = false;
    for (let i = 0; i < 6; i++) {
      const t = performance.now();
      const res = await app.request('/', { headers: { cookie } });
      const html = await res.text();
      if (i > 0) times.push(performance.now() - t);
      bytes = html.length;
      ok = res.status === 200 && html.includes(`id="box-SHOP${String(BOXES - 1).padStart(5, '0')}"`);
    }
    const m = median(times);
    progress(`fleet page: ${m.toFixed(0)} ms median (${times.map((x) => x.toFixed(0)).join(', ')}), ${(bytes / 1e6).toFixed(2)} MB of HTML`);
    return [
      {
        metric: `console fleet page, ${BOXES} boxes x ${SALES} sales today (SQLite), median`,
        value: `${m.toFixed(0)} ms`,
        target: '<= 500 ms',
        ok: ok && m <= 500,
      },
    ];
  } finally {
    await store.close();
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
