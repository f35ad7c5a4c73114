import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Gauge, Registry } from 'prom-client';
import { HEALTH_VALUE } from '../backend/heartbeat.js';
import { messageOf } from '../errors.js';
import type { Logger } from '../log.js';
import type { BoxFigures } from './figures.js';

/**
 * SCANBOX_METRICS_FILE (contract §11): the box's own figures for node_exporter's textfile collector, in either
 * mode. Written whole to a temporary file in the same folder and renamed over the old one, so the collector
 * never reads half a file; no timestamps (the collector stamps what it reads). The device id is the only label
 * besides build_info's version: node_exporter adds the instance.
 */

export class MetricsFile {
  private readonly registry = new Registry();
  private readonly gauges: Record<string, Gauge> = {};
  private readonly labels: { device_id: string };
  private failing = false;

  constructor(
    readonly path: string,
    deviceId: string,
    version: string,
    private readonly log: Logger,
  ) {
    this.labels = { device_id: deviceId };
    const registers = [this.registry];
    new Gauge({ name: 'scanbox_build_info', help: 'The scanbox version of this box (always 1).', labelNames: ['version', 'device_id'], registers }).set({ version, device_id: deviceId }, 1);
    const gauge = (name: string, help: string): void => {
      this.gauges[name] = new Gauge({ name, help, labelNames: ['device_id'], registers });
    };
    gauge('scanbox_box_health', "The box's health: 0 READY, 1 BUSY, 2 OFFLINE, 3 FAULT.");
    gauge('scanbox_box_uptime_seconds', "The box daemon's uptime.");
    gauge('scanbox_box_clock_synchronised', '1 when the clock is synchronised, else 0.');
    gauge('scanbox_box_pending_reversals', 'Reversals the box still has to make.');
    gauge('scanbox_box_pending_refunds', 'Refunds not settled yet.');
    gauge('scanbox_box_reconciliation_discrepancies', 'Discrepancies in the last reconciliation with the bill.');
    gauge('scanbox_box_disk_free_bytes', "Free bytes on the journal's file system.");
    gauge('scanbox_box_journal_bytes', 'The size of the journal.');
    gauge('scanbox_box_paid_today', "Sales paid today (the box's business day), still paid.");
    gauge('scanbox_box_paid_today_fen', 'Their sum in fen (integer money, as everywhere in scanbox).');
  }

  /** Writes the file; a failure is logged once until a write succeeds again, and never thrown. */
  async write(f: BoxFigures): Promise<void> {
    const set = (name: string, value: number | null): void => {
      const g = this.gauges[name]!;
      g.reset();
      if (value !== null) g.set(this.labels, value);
    };
    set('scanbox_box_health', HEALTH_VALUE[f.health]);
    set('scanbox_box_uptime_seconds', f.uptimeS);
    set('scanbox_box_clock_synchronised', f.clockSynced ? 1 : 0);
    set('scanbox_box_pending_reversals', f.pendingReversals);
    set('scanbox_box_pending_refunds', f.pendingRefunds);
    set('scanbox_box_reconciliation_discrepancies', f.reconciliation?.discrepancies ?? null);
    set('scanbox_box_disk_free_bytes', f.diskFreeBytes);
    set('scanbox_box_journal_bytes', f.journalBytes);
    set('scanbox_box_paid_today', f.paidToday.count);
    set('scanbox_box_paid_today_fen', f.paidToday.fen);
    const text = await this.registry.metrics();
    const temp = join(dirname(this.path), `.${basename(this.path)}.${process.pid}.tmp`);
    try {
      writeFileSync(temp, text, { mode: 0o644 });
      renameSync(temp, this.path);
      if (this.failing) this.log.info('metrics file written again', { file: this.path });
      this.failing = false;
    } catch (error) {
      rmSync(temp, { force: true });
      if (!this.failing) this.log.warning('metrics file cannot be written (sales are not affected)', { file: this.path, error: messageOf(error) });
      this.failing = true;
    }
  }
}
