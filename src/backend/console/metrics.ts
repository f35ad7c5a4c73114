import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { VERSION } from '../../version.js';
import { HEALTH_VALUE, isOnline, type HeartbeatReport } from '../heartbeat.js';
import type { RefusalCode } from '../protocol.js';
import type { ServerObserver } from '../server.js';
import type { BackendStore, CallOutcomeKind } from '../store.js';

/**
 * The backend's Prometheus metrics (contract §11), served at /metrics on the admin listener. prom-client's
 * conventions: the scanbox_ prefix, base units (seconds, bytes), _total counters, _seconds histograms, a
 * build_info gauge, and Node's default process metrics under their usual names (process_*, nodejs_*).
 *
 * Counters are this process's since it started (a chain's backends are summed by Prometheus); the fleet's
 * figures (boxes by state, each box's last heartbeat) are read from the store at each scrape, so every backend
 * of a chain shows the same fleet. The device id is the only per-box label.
 */

export class BackendMetrics implements ServerObserver {
  readonly registry = new Registry();
  private readonly calls: Counter<'call' | 'outcome'>;
  private readonly refusals: Counter<'code'>;
  private readonly latency: Histogram<'call'>;
  private readonly heartbeats: Counter;
  private fleet: Promise<Fleet> | null = null;

  constructor(store: BackendStore, now: () => number = Date.now) {
    const registers = [this.registry];
    // The event loop's lag sampled every 100 ms: prom-client's default of 10 ms wakes the backend 100 times a
    // second, about 0.35 % of a core while it has nothing else to do (3,000 boxes' heartbeats cost about 5 %).
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 100 });
    new Gauge({ name: 'scanbox_build_info', help: 'The scanbox version of this backend (always 1).', labelNames: ['version'], registers }).set({ version: VERSION }, 1);
    this.calls = new Counter({ name: 'scanbox_backend_calls_total', help: 'Calls from boxes by call and outcome (refused: stopped by the backend).', labelNames: ['call', 'outcome'], registers });
    this.refusals = new Counter({ name: 'scanbox_backend_refusals_total', help: 'Calls refused by the backend, by refusal code.', labelNames: ['code'], registers });
    this.latency = new Histogram({
      name: 'scanbox_wechatpay_request_duration_seconds',
      help: "WeChat Pay's answer time for forwarded calls (with the client's retries and failover).",
      labelNames: ['call'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30],
      registers,
    });
    this.heartbeats = new Counter({ name: 'scanbox_backend_heartbeats_total', help: 'Heartbeats kept from boxes.', registers });

    // The fleet, read from the store once per scrape (text() sets it) and shared by the gauges below.
    const read = (): Promise<Fleet> => (this.fleet ??= readFleet(store, now()));
    const perBox = (name: string, help: string, pick: (r: HeartbeatReport, at: number) => number | null): void => {
      new Gauge({
        name,
        help,
        labelNames: ['device_id'],
        registers,
        async collect() {
          this.reset();
          for (const hb of (await read()).latest) {
            const value = pick(hb.report, hb.at);
            if (value !== null) this.set({ device_id: hb.deviceId }, value);
          }
        },
      });
    };
    new Gauge({
      name: 'scanbox_boxes',
      help: 'Enrolled boxes by state: online (heartbeat within 3 minutes), offline, revoked.',
      labelNames: ['state'],
      registers,
      async collect() {
        const f = await read();
        this.set({ state: 'online' }, f.online);
        this.set({ state: 'offline' }, f.offline);
        this.set({ state: 'revoked' }, f.revoked);
      },
    });
    perBox('scanbox_box_up', "1 when the box's last heartbeat is less than 3 minutes old, else 0.", (_r, at) => (isOnline(at, now()) ? 1 : 0));
    perBox('scanbox_box_last_heartbeat_timestamp_seconds', "When the backend received the box's last heartbeat.", (_r, at) => at / 1000);
    perBox('scanbox_box_health', "The box's health in its last heartbeat: 0 READY, 1 BUSY, 2 OFFLINE, 3 FAULT.", (r) => HEALTH_VALUE[r.health]);
    perBox('scanbox_box_uptime_seconds', "The box daemon's uptime in its last heartbeat.", (r) => r.uptimeS);
    perBox('scanbox_box_clock_synchronised', '1 when the box says its clock is synchronised.', (r) => (r.clockSynced ? 1 : 0));
    perBox('scanbox_box_pending_reversals', 'Reversals the box still has to make.', (r) => r.pendingReversals);
    perBox('scanbox_box_pending_refunds', 'Refunds of the box not settled yet.', (r) => r.pendingRefunds);
    perBox('scanbox_box_reconciliation_discrepancies', "Discrepancies in the box's last reconciliation.", (r) => r.reconciliation?.discrepancies ?? null);
    perBox('scanbox_box_disk_free_bytes', "Free bytes on the box's journal file system.", (r) => r.diskFreeBytes);
    perBox('scanbox_box_journal_bytes', "The size of the box's journal.", (r) => r.journalBytes);
  }

  call(call: string, outcome: CallOutcomeKind, detail: { seconds?: number; refusal?: RefusalCode }): void {
    this.calls.inc({ call, outcome });
    if (detail.refusal !== undefined) this.refusals.inc({ code: detail.refusal });
    if (detail.seconds !== undefined && call !== 'heartbeat') this.latency.observe({ call }, detail.seconds);
  }

  heartbeat(): void {
    this.heartbeats.inc();
  }

  async text(): Promise<string> {
    try {
      return await this.registry.metrics();
    } finally {
      this.fleet = null;
    }
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

interface Fleet {
  latest: { deviceId: string; at: number; report: HeartbeatReport }[];
  online: number;
  offline: number;
  revoked: number;
}

async function readFleet(store: BackendStore, now: number): Promise<Fleet> {
  const [boxes, latest] = await Promise.all([store.boxes(), store.latestHeartbeats()]);
  const heard = new Map(latest.map((h) => [h.deviceId, h.at]));
  let online = 0;
  let offline = 0;
  let revoked = 0;
  for (const box of boxes) {
    if (box.revokedAt !== null) revoked++;
    else if (isOnline(heard.get(box.deviceId) ?? null, now)) online++;
    else offline++;
  }
  const enrolled = new Set(boxes.map((b) => b.deviceId));
  return { latest: latest.filter((h) => enrolled.has(h.deviceId)), online, offline, revoked };
}
