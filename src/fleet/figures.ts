import { statSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import type { HeartbeatReport } from '../backend/heartbeat.js';
import { businessDay, dayBounds } from '../business-day.js';
import { clockTrusted, type Clock } from '../clock.js';
import type { Health } from '../health.js';
import type { Journal } from '../journal/journal.js';
import { VERSION } from '../version.js';

/**
 * What a box says about itself to the fleet (contract §11): the heartbeat to its backend and the metrics file
 * for node_exporter come from this one reading. Every part that cannot be read is null or 0, never a reason
 * to fail: the box's sales come first.
 */

export interface FigureSource {
  health(): Health;
  /** Null in FAULT mode, when the journal cannot be used. */
  journal: Journal | null;
  dbPath: string;
  /** When the daemon started (the clock's ms). */
  startedAt: number;
  clock: Clock;
  timeZone: string;
}

export interface BoxFigures extends HeartbeatReport {
  /** Today's (business day's) paid sales, still paid. */
  paidToday: { count: number; fen: number };
}

function safely<T>(read: () => T, fallback: T): T {
  try {
    return read();
  } catch {
    return fallback;
  }
}

export function journalBytes(dbPath: string): number | null {
  const size = (path: string): number => safely(() => statSync(path).size, 0);
  const main = safely(() => statSync(dbPath).size, null as number | null);
  return main === null ? null : main + size(`${dbPath}-wal`);
}

export function diskFreeBytes(dbPath: string): number | null {
  return safely(() => {
    const fs = statfsSync(dirname(dbPath));
    return Number(fs.bavail) * Number(fs.bsize);
  }, null);
}

export function boxFigures(source: FigureSource): BoxFigures {
  const now = source.clock.now();
  const health = source.health();
  const journal = source.journal;
  const reconciliation = journal ? safely(() => journal.latestReconciliation(), null) : null;
  const today = dayBounds(businessDay(now, source.timeZone), source.timeZone);
  return {
    version: VERSION.slice(0, 40),
    health: health.kind,
    healthText: health.kind === 'OFFLINE' || health.kind === 'FAULT' ? health.text.slice(0, 200) : '',
    uptimeS: Math.max(0, Math.floor((now - source.startedAt) / 1000)),
    clockSynced: clockTrusted(now),
    openSale: health.kind === 'BUSY' ? health.ref.slice(0, 64) : null,
    pendingReversals: journal ? safely(() => journal.pendingReversals().length, 0) : 0,
    pendingRefunds: journal ? safely(() => journal.refunds.unfinished().length, 0) : 0,
    reconciliation: reconciliation ? { day: reconciliation.day, matched: reconciliation.matched, discrepancies: reconciliation.discrepancies } : null,
    diskFreeBytes: diskFreeBytes(source.dbPath),
    journalBytes: journalBytes(source.dbPath),
    sentAt: Math.max(0, Math.floor(now)),
    paidToday: journal ? safely(() => journal.paidBetween(today.startMs, today.endMs), { count: 0, fen: 0 }) : { count: 0, fen: 0 },
  };
}

/** The heartbeat's part of the figures (what goes on the wire; parseHeartbeatReport's fields exactly). */
export function heartbeatOf(figures: BoxFigures): HeartbeatReport {
  const { paidToday: _paid, ...report } = figures;
  return report;
}

/**
 * The health as the heartbeat watches it for a change to send at once: READY and BUSY are one (a box at work is
 * well; a heartbeat per sale would double a busy counter's traffic), OFFLINE and FAULT with their reason.
 */
export function healthWatchKey(health: Health): string {
  if (health.kind === 'READY' || health.kind === 'BUSY') return 'WORKING';
  return `${health.kind} ${health.text}`;
}
