import { readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import { enrolBox } from '../../src/backend/enrol.js';
import { HEARTBEAT_HISTORY, HEARTBEAT_PATH, isOnline, OFFLINE_AFTER_MS, type HeartbeatReport } from '../../src/backend/heartbeat.js';
import { BackendPki } from '../../src/backend/pki.js';
import { BackendServer, KEEP_ALIVE_MS as BACKEND_KEEP_ALIVE_MS } from '../../src/backend/server.js';
import { SqliteBackendStore } from '../../src/backend/store.js';
import { HeartbeatSender, KEEP_ALIVE_MS as BOX_KEEP_ALIVE_MS } from '../../src/fleet/heartbeat.js';
import { memoryLogger } from '../../src/log.js';
import { backendModeEnv, Rig } from '../../src/simulator/rig.js';
import { startBackendHere } from '../helpers/backend-rig.js';
import { tempDir } from '../helpers/world.js';

/**
 * Heartbeats (contract §11): the real daemon in backend mode tells a real backend about itself at start, over
 * its mutual TLS; the backend keeps the latest and a bounded history, calls a box silent for 3 minutes offline
 * (the backend's clock is injected), and refuses a revoked box's heartbeat like any call.
 */

let n = 0;
const code = (): string => `13${String(process.pid % 100000).padStart(5, '0')}7${String(++n).padStart(10, '0')}`;

t.test('a box in backend mode sends heartbeats; the backend keeps them', async (t) => {
  const rig = await Rig.start();
  t.teardown(() => rig.close());
  const dir = tempDir('scanbox-heartbeat-e2e-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const backendLog = memoryLogger('debug');
  let now = Date.now();
  const waiting: ((r: { deviceId: string; report: HeartbeatReport }) => void)[] = [];
  const nextHeartbeat = (): Promise<{ deviceId: string; report: HeartbeatReport }> => new Promise((resolve) => waiting.push(resolve));
  const backend = await startBackendHere(rig, dir, {
    log: backendLog,
    now: () => now,
    observer: {
      call: () => undefined,
      heartbeat: (deviceId, report) => {
        for (const w of waiting.splice(0)) w({ deviceId, report });
      },
    },
  });
  t.teardown(() => backend.close());
  const { store, server } = backend;
  const files = await backend.enrol('BENCH01', join(rig.dir, 'backend-credentials'));
  const boxEnv = {
    ...backendModeEnv(server.origin, files),
    SCANBOX_METRICS_FILE: join(dir, 'scanbox.prom'),
  };
  const first = nextHeartbeat();
  await rig.startDaemon(boxEnv);

  await t.test('one at start, with what the box is', async (t) => {
    const { deviceId, report } = await first;
    t.equal(deviceId, 'BENCH01');
    t.match(report.version, /^\d+\.\d+\.\d+/);
    t.equal(report.health, 'READY');
    t.equal(report.openSale, null);
    t.equal(report.pendingReversals, 0);
    t.equal(report.pendingRefunds, 0);
    t.ok(report.journalBytes! > 0, 'journal size');
    t.ok(report.diskFreeBytes! > 0, 'free disk');
    t.ok(report.uptimeS >= 0 && report.uptimeS < 120, 'uptime');
    const latest = await store.latestHeartbeats();
    t.equal(latest.length, 1);
    t.equal(latest[0]!.at, now, "received by the backend's clock");
    t.same(latest[0]!.report, report);
  });

  await t.test('a sale goes through beside the heartbeats', async (t) => {
    const reg = rig.register;
    const from = reg.mark;
    reg.send('PAY 1234 HB-1');
    await reg.next('ACK HB-1', 5000, from);
    rig.scanner.send(code());
    t.match(await reg.next(/^(PAID|FAILED) HB-1 /, 30000, from), /^PAID HB-1 /);
  });

  await t.test("the box's metrics file (SCANBOX_METRICS_FILE), written at start", async (t) => {
    const text = readFileSync(join(dir, 'scanbox.prom'), 'utf8');
    t.match(text, /^scanbox_box_health\{device_id="BENCH01"\} [01]$/m);
    t.match(text, /^scanbox_box_journal_bytes\{device_id="BENCH01"\} [1-9]\d*$/m);
    t.match(text, /^scanbox_build_info\{version="[^"]+",device_id="BENCH01"\} 1$/m);
  });

  await t.test('a box silent for 3 minutes is offline (the backend clock moved on)', async (t) => {
    const [latest] = await store.latestHeartbeats();
    t.ok(isOnline(latest!.at, now), 'online just after its heartbeat');
    now += OFFLINE_AFTER_MS - 1000;
    t.ok(isOnline(latest!.at, now), 'still online after 2:59');
    now += 1000;
    t.notOk(isOnline(latest!.at, now), 'offline at 3:00');
  });

  await t.test('the history is bounded', async (t) => {
    const sample = (await store.latestHeartbeats())[0]!.report;
    for (let i = 0; i < HEARTBEAT_HISTORY + 5; i++) await store.recordHeartbeat({ deviceId: 'OTHER', at: i, report: { ...sample, uptimeS: i } });
    const history = await store.heartbeats('OTHER', { limit: 5000 });
    t.equal(history.length, HEARTBEAT_HISTORY, 'never more than the history shown');
    const kept = new Database(join(dir, 'backend.db'), { readonly: true }).prepare("SELECT count(*) AS n FROM heartbeats WHERE device_id = 'OTHER'").get() as { n: number };
    t.ok(kept.n >= HEARTBEAT_HISTORY && kept.n < HEARTBEAT_HISTORY + 32, `kept ${kept.n}: older ones dropped`);
    t.equal(history[0]!.report.uptimeS, HEARTBEAT_HISTORY + 4, 'newest first');
    t.equal((await store.heartbeats('BENCH01')).length >= 1, true, "another box's history untouched");
  });

  await t.test("a revoked box's heartbeat is refused; failures are logged once, not each time", async (t) => {
    await server.revoke('BENCH01');
    const log = memoryLogger('debug');
    const before = (await store.heartbeats('BENCH01')).length;
    const firstReport = (await store.heartbeats('BENCH01'))[0]!.report;
    const sender = new HeartbeatSender({
      origin: server.origin,
      certificate: { certPem: readFileSync(files.cert, 'utf8'), keyPem: readFileSync(files.key, 'utf8') },
      caPem: readFileSync(files.ca, 'utf8'),
      report: () => firstReport,
      watch: () => 'x',
      log,
    });
    for (let i = 0; i < 3; i++) {
      sender.beat();
      // beat() runs one at a time; stop() waits for the one under way.
      await (sender as unknown as { inFlight: Promise<void> | null }).inFlight;
    }
    await sender.stop();
    t.equal(sender.sent, 0);
    t.equal(sender.failed, 3);
    t.equal((await store.heartbeats('BENCH01')).length, before, 'nothing kept');
    const warnings = log.lines.filter((l) => /heartbeat not delivered/.test(l));
    t.equal(warnings.length, 1, 'one warning for three failures');
    t.match(warnings[0], /BOX_REVOKED/);
    t.ok(backendLog.lines.some((l) => /call refused.*refused=BOX_REVOKED/.test(l) && /heartbeat/.test(l)), 'the backend says it refused it');
  });
});

t.test('heartbeats: one kept connection across minutes, written in batches, none lost on a clean stop', async (t) => {
  const dir = tempDir('scanbox-heartbeat-batch-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = SqliteBackendStore.open(join(dir, 'backend.db'));
  t.teardown(() => store.close());
  const pki = BackendPki.openOrCreate(dir, { hostname: 'backend.test' });
  const start = (batchMs: number) =>
    BackendServer.start({
      listen: { host: '127.0.0.1', port: 0 },
      store,
      pki,
      client: {} as never,
      policy: { maxAmountFen: 1000, refunds: 'off', bills: 'off', ratePerMinute: 60 },
      log: memoryLogger('debug'),
      recheckMs: 0,
      heartbeats: { batchMs, batchMax: 500 },
    });
  const { certificate } = await enrolBox(pki, store, 'KEEP1', { policy: {} });
  const report: HeartbeatReport = {
    version: '0.1.0', health: 'READY', healthText: '', uptimeS: 1, clockSynced: true, openSale: null, pendingReversals: 0,
    pendingRefunds: 0, reconciliation: null, diskFreeBytes: null, journalBytes: null, sentAt: 1,
  };

  await t.test("the box's heartbeats share one connection, kept longer than the minute between two", async (t) => {
    const server = await start(5);
    t.teardown(() => server.close());
    const sender = new HeartbeatSender({ origin: server.origin, certificate, caPem: pki.caPem, report: () => report, watch: () => 'x', log: memoryLogger('debug') });
    for (let i = 0; i < 3; i++) {
      sender.beat();
      await (sender as unknown as { inFlight: Promise<void> | null }).inFlight;
    }
    t.equal(sender.sent, 3);
    t.equal(server.connections('KEEP1'), 1, 'one connection for the three');
    await sender.stop();
    t.ok(BOX_KEEP_ALIVE_MS > 60_000, "the box keeps it idle past a minute");
    t.ok(BOX_KEEP_ALIVE_MS < BACKEND_KEEP_ALIVE_MS, 'and closes it before the backend would');
    // What the backend tells clients (undici keeps a connection no longer than this hint).
    const agent = new https.Agent({ keepAlive: true });
    t.teardown(() => agent.destroy());
    const hint = await new Promise<string>((resolve, reject) => {
      const req = https.request(new URL(HEARTBEAT_PATH, server.origin), { method: 'POST', ca: pki.caPem, cert: certificate.certPem, key: certificate.keyPem, agent, headers: { 'content-type': 'application/json' } }, (res) => {
        res.resume();
        resolve(String(res.headers['keep-alive'] ?? ''));
      });
      req.on('error', reject);
      req.end(JSON.stringify(report));
    });
    t.equal(hint, `timeout=${BACKEND_KEEP_ALIVE_MS / 1000}`);
  });

  await t.test('revoked by another process while its connection stays open: the next heartbeat on it is refused', async (t) => {
    const { certificate: other } = await enrolBox(pki, store, 'KEEP2', { policy: {} });
    const server = await start(5);
    t.teardown(() => server.close());
    const log = memoryLogger('debug');
    const sender = new HeartbeatSender({ origin: server.origin, certificate: other, caPem: pki.caPem, report: () => report, watch: () => 'x', log });
    t.teardown(() => sender.stop());
    const beat = async (): Promise<void> => {
      sender.beat();
      await (sender as unknown as { inFlight: Promise<void> | null }).inFlight;
    };
    await beat();
    await beat();
    t.equal(sender.sent, 2);
    // `scanbox backend revoke` writes the store; this server's timer is off (recheckMs 0): the connection stays.
    const revoker = SqliteBackendStore.open(join(dir, 'backend.db'));
    await revoker.revoke('KEEP2', Date.now());
    await revoker.close();
    t.equal(server.connections('KEEP2'), 1, 'still open');
    await beat();
    t.equal(sender.failed, 1, 'refused on the same connection');
    t.match(log.lines.join('\n'), /BOX_REVOKED/);
  });

  await t.test('a heartbeat waits for its batch; a clean stop writes what waits', async (t) => {
    const server = await start(60_000);
    const before = (await store.heartbeats('KEEP1')).length;
    const answered = new Promise<number>((resolve) => {
      const req = https.request(new URL(HEARTBEAT_PATH, server.origin), { method: 'POST', ca: pki.caPem, cert: certificate.certPem, key: certificate.keyPem, agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', () => resolve(-1));
      req.end(JSON.stringify({ ...report, uptimeS: 777 }));
    });
    while (server.heartbeatBatch.waiting === 0) await new Promise((r) => setImmediate(r));
    t.equal((await store.heartbeats('KEEP1')).length, before, 'not written yet: the batch waits');
    await server.close();
    const kept = await store.heartbeats('KEEP1');
    t.equal(kept.length, before + 1, 'written at the stop');
    t.equal(kept[0]!.report.uptimeS, 777);
    t.equal(server.heartbeatBatch.batches, 1);
    await answered;
  });
});
