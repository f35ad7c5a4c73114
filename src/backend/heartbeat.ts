/**
 * A box's heartbeat (contract §11): what it says about itself to the backend once a minute, at start and at once
 * when its health changes, over the same mutual TLS as its WeChat Pay calls:
 *
 *   POST /v1/heartbeat   content-type: application/json   body: HeartbeatReport
 *   204                  kept
 *   4xx/503 {"refused": {"code", "text"}}   as for any call (a revoked box is refused)
 *
 * Nothing in it is a secret or a payment code: the open sale is named by the register's REF only.
 */

export const HEARTBEAT_PATH = '/v1/heartbeat';

/** How many heartbeats the backend keeps per box: a day at one a minute. */
export const HEARTBEAT_HISTORY = 1440;

/** A box not heard from for this long is offline to the backend. */
export const OFFLINE_AFTER_MS = 3 * 60_000;

/** The largest body the backend reads for a heartbeat. */
export const MAX_HEARTBEAT_BYTES = 4096;

export const HEALTH_KINDS = ['READY', 'BUSY', 'OFFLINE', 'FAULT'] as const;
export type HealthKind = (typeof HEALTH_KINDS)[number];

/** A health as a metric's value (scanbox_box_health, on the backend and in a box's metrics file). */
export const HEALTH_VALUE: Readonly<Record<HealthKind, number>> = { READY: 0, BUSY: 1, OFFLINE: 2, FAULT: 3 };

export interface HeartbeatReport {
  /** The box's scanbox version. */
  version: string;
  health: HealthKind;
  /** Why, for OFFLINE and FAULT (e.g. `WeChat Pay unreachable (NETWORK)`); '' otherwise. */
  healthText: string;
  uptimeS: number;
  clockSynced: boolean;
  /** The REF of the sale under way, or null. */
  openSale: string | null;
  pendingReversals: number;
  pendingRefunds: number;
  /** The box's last reconciliation with WeChat Pay's bill, or null when it never reconciled. */
  reconciliation: { day: string; matched: number; discrepancies: number } | null;
  /** Free bytes on the journal's file system; null when it cannot be read. */
  diskFreeBytes: number | null;
  /** The journal's size in bytes (with its WAL); null when it cannot be read. */
  journalBytes: number | null;
  /** The box's own clock when it sent this (its clock may be wrong: the backend keeps its own time too). */
  sentAt: number;
}

export interface HeartbeatRecord {
  deviceId: string;
  /** When the backend received it, by the backend's clock. */
  at: number;
  report: HeartbeatReport;
}

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const COUNT_MAX = 1e15;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

class Invalid extends Error {}

function text(body: Record<string, unknown>, name: string, max: number, allowEmpty = true): string {
  const v = body[name];
  if (typeof v !== 'string' || v.length > max || CONTROL.test(v) || (!allowEmpty && v === '')) throw new Invalid(`${name} must be text of at most ${max} characters`);
  return v;
}

function count(body: Record<string, unknown>, name: string, nullable = false): number {
  const v = body[name];
  if (nullable && v === null) return null as unknown as number;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > COUNT_MAX) throw new Invalid(`${name} must be a whole number ≥ 0${nullable ? ' or null' : ''}`);
  return v;
}

const FIELDS = [
  'version',
  'health',
  'healthText',
  'uptimeS',
  'clockSynced',
  'openSale',
  'pendingReversals',
  'pendingRefunds',
  'reconciliation',
  'diskFreeBytes',
  'journalBytes',
  'sentAt',
];

/** A heartbeat as the backend reads it (a box may be stolen: every field checked, nothing extra). */
export function parseHeartbeatReport(json: unknown): { ok: true; report: HeartbeatReport } | { ok: false; text: string } {
  try {
    if (!isRecord(json)) throw new Invalid('the body must be a JSON object');
    const extra = Object.keys(json).filter((k) => !FIELDS.includes(k));
    if (extra.length > 0) throw new Invalid(`unexpected field ${extra.sort().join(', ')}`);
    for (const name of FIELDS) if (!(name in json)) throw new Invalid(`${name} is required`);
    const health = json.health;
    if (typeof health !== 'string' || !(HEALTH_KINDS as readonly string[]).includes(health)) throw new Invalid(`health must be one of ${HEALTH_KINDS.join(', ')}`);
    if (typeof json.clockSynced !== 'boolean') throw new Invalid('clockSynced must be true or false');
    const openSale = json.openSale === null ? null : text(json, 'openSale', 64, false);
    let reconciliation: HeartbeatReport['reconciliation'] = null;
    if (json.reconciliation !== null) {
      const r = json.reconciliation;
      if (!isRecord(r) || typeof r.day !== 'string' || !/^[0-9]{8}$/.test(r.day)) throw new Invalid('reconciliation must be null or {day: YYYYMMDD, matched, discrepancies}');
      const extraR = Object.keys(r).filter((k) => !['day', 'matched', 'discrepancies'].includes(k));
      if (extraR.length > 0) throw new Invalid(`unexpected field reconciliation.${extraR.sort().join(', ')}`);
      reconciliation = { day: r.day, matched: count(r, 'matched'), discrepancies: count(r, 'discrepancies') };
    }
    return {
      ok: true,
      report: {
        version: text(json, 'version', 40, false),
        health: health as HealthKind,
        healthText: text(json, 'healthText', 200),
        uptimeS: count(json, 'uptimeS'),
        clockSynced: json.clockSynced,
        openSale,
        pendingReversals: count(json, 'pendingReversals'),
        pendingRefunds: count(json, 'pendingRefunds'),
        reconciliation,
        diskFreeBytes: count(json, 'diskFreeBytes', true),
        journalBytes: count(json, 'journalBytes', true),
        sentAt: count(json, 'sentAt'),
      },
    };
  } catch (error) {
    if (error instanceof Invalid) return { ok: false, text: error.message };
    throw error;
  }
}

/** Online: heard from within OFFLINE_AFTER_MS of `now`. */
export function isOnline(lastHeardAt: number | null, now: number): boolean {
  return lastHeardAt !== null && now - lastHeardAt < OFFLINE_AFTER_MS;
}
