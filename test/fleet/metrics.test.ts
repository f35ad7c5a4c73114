import { readFileSync, readdirSync, rmSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { BackendMetrics } from '../../src/backend/console/metrics.js';
import type { HeartbeatReport } from '../../src/backend/heartbeat.js';
import { SqliteBackendStore } from '../../src/backend/store.js';
import { MetricsFile } from '../../src/fleet/metrics-file.js';
import { memoryLogger } from '../../src/log.js';
import { tempDir } from '../helpers/world.js';

const report = (over: Partial<HeartbeatReport> = {}): HeartbeatReport => ({
  version: '0.1.0',
  health: 'READY',
  healthText: '',
  uptimeS: 3600,
  clockSynced: true,
  openSale: null,
  pendingReversals: 0,
  pendingRefunds: 0,
  reconciliation: { day: '20261206', matched: 10, discrepancies: 2 },
  diskFreeBytes: 5_000_000_000,
  journalBytes: 1_000_000,
  sentAt: 0,
  ...over,
});

/** Every sample line: `name{labels} value`, no timestamp (a third field). */
function samples(text: string): string[] {
  return text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
}

t.test("the backend's /metrics text: prom-client conventions, boxes by state, heartbeat figures per box", async (t) => {
  const dir = tempDir('scanbox-metrics-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = SqliteBackendStore.open(join(dir, 'backend.db'));
  t.teardown(() => store.close());
  let now = Date.UTC(2026, 11, 7, 4, 0, 0);
  for (const id of ['SHOP1', 'SHOP2', 'SHOP3']) await store.enrol({ deviceId: id, serial: `aa${id}`, notAfter: now + 1e12, at: now });
  await store.revoke('SHOP3', now);
  await store.recordHeartbeat({ deviceId: 'SHOP1', at: now - 60_000, report: report({ pendingReversals: 3 }) });
  await store.recordHeartbeat({ deviceId: 'SHOP2', at: now - 4 * 60_000, report: report({ health: 'FAULT', healthText: 'journal damaged' }) });
  const metrics = new BackendMetrics(store, () => now);
  metrics.call('micropay', 'success', { seconds: 0.12 });
  metrics.call('micropay', 'refused', { refusal: 'AMOUNT_LIMIT' });
  metrics.call('heartbeat', 'success', {});
  const text = await metrics.text();
  t.match(text, /^scanbox_build_info\{version="\d+\.\d+\.\d+[^"]*"\} 1$/m);
  t.match(text, /^scanbox_boxes\{state="online"\} 1$/m);
  t.match(text, /^scanbox_boxes\{state="offline"\} 1$/m);
  t.match(text, /^scanbox_boxes\{state="revoked"\} 1$/m);
  t.match(text, /^scanbox_backend_calls_total\{call="micropay",outcome="success"\} 1$/m);
  t.match(text, /^scanbox_backend_refusals_total\{code="AMOUNT_LIMIT"\} 1$/m);
  t.match(text, /^scanbox_wechatpay_request_duration_seconds_bucket\{le="0.25",call="micropay"\} 1$/m);
  t.match(text, /^scanbox_wechatpay_request_duration_seconds_count\{call="micropay"\} 1$/m);
  t.match(text, /^scanbox_box_up\{device_id="SHOP1"\} 1$/m);
  t.match(text, /^scanbox_box_up\{device_id="SHOP2"\} 0$/m);
  t.match(text, /^scanbox_box_health\{device_id="SHOP2"\} 3$/m);
  t.match(text, /^scanbox_box_pending_reversals\{device_id="SHOP1"\} 3$/m);
  t.match(text, /^scanbox_box_reconciliation_discrepancies\{device_id="SHOP1"\} 2$/m);
  t.match(text, /^scanbox_box_disk_free_bytes\{device_id="SHOP1"\} 5000000000$/m);
  t.match(text, /^process_cpu_seconds_total /m, "Node's default process metrics");
  t.notMatch(text, /SHOP3/, 'a revoked box has no per-box figures');
  for (const line of samples(text).filter((l) => l.startsWith('scanbox_box_'))) t.match(line, /^scanbox_box_[a-z_]+\{device_id="[A-Z0-9]+"\} [0-9.e+-]+$/, `one label: ${line}`);
  for (const line of samples(text)) t.equal(line.trim().split(/\s+/).length, 2, `no timestamp: ${line.slice(0, 60)}`);
  now += 10 * 60_000;
  t.match(await metrics.text(), /^scanbox_boxes\{state="offline"\} 2$/m, "the store's heartbeats read again at each scrape");
});

t.test('a box writes its figures for the textfile collector: renamed into place, no timestamps', async (t) => {
  const dir = tempDir('scanbox-metrics-file-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'scanbox.prom');
  const log = memoryLogger('debug');
  const file = new MetricsFile(path, 'SHOP1', '0.1.0', log);
  await file.write({ ...report({ pendingRefunds: 1 }), paidToday: { count: 4, fen: 12345 } });
  const text = readFileSync(path, 'utf8');
  t.match(text, /^scanbox_build_info\{version="0.1.0",device_id="SHOP1"\} 1$/m);
  t.match(text, /^scanbox_box_paid_today_fen\{device_id="SHOP1"\} 12345$/m);
  t.match(text, /^scanbox_box_paid_today\{device_id="SHOP1"\} 4$/m);
  t.match(text, /^scanbox_box_pending_refunds\{device_id="SHOP1"\} 1$/m);
  t.match(text, /^scanbox_box_health\{device_id="SHOP1"\} 0$/m);
  for (const line of samples(text)) t.equal(line.split(' ').length, 2, `no timestamp: ${line}`);
  t.same(readdirSync(dir), ['scanbox.prom'], 'no temporary file left');
  await file.write({ ...report({ health: 'OFFLINE', healthText: 'x' }), paidToday: { count: 5, fen: 20000 } });
  t.match(readFileSync(path, 'utf8'), /^scanbox_box_health\{device_id="SHOP1"\} 2$/m, 'rewritten whole');

  // A folder that is not there: one warning, no throw, and one line when it works again.
  const gone = new MetricsFile(join(dir, 'missing', 'scanbox.prom'), 'SHOP1', '0.1.0', log);
  await gone.write({ ...report(), paidToday: { count: 0, fen: 0 } });
  await gone.write({ ...report(), paidToday: { count: 0, fen: 0 } });
  t.equal(log.lines.filter((l) => /metrics file cannot be written/.test(l)).length, 1);
  mkdirSync(join(dir, 'missing'));
  await gone.write({ ...report(), paidToday: { count: 0, fen: 0 } });
  t.ok(log.lines.some((l) => /metrics file written again/.test(l)));
});
