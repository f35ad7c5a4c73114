import { businessDay, dayBounds, previousDay } from '../../business-day.js';
import { isOnline, type HeartbeatRecord } from '../heartbeat.js';
import type { BackendStore, BoxRecord, CallRecord } from '../store.js';
import { CHINA_OFFSET_MS, DAY_MS, HOUR_MS } from '../store/money.js';

/**
 * What the console shows, read from the store (contract §11): the backend's own view of each box's money from
 * the calls it forwarded (a sale is paid when WeChat Pay said so to a micropay or an orderquery, and not given
 * back by a reverse or a later query), the boxes' heartbeats, and the problems that need a person. China
 * business day (WeChat Pay's bill days).
 */

export const CHINA = 'Asia/Shanghai';
/** A certificate ending within this is a problem. */
export const CERT_WARNING_MS = 30 * 86_400_000;

export interface Money {
  paidCount: number;
  paidFen: number;
  refundCount: number;
  refundFen: number;
  netFen: number;
}

export type ProblemKind = 'OFFLINE' | 'NEVER_HEARD' | 'FAULT' | 'BOX_OFFLINE' | 'REVERSAL_PENDING' | 'REVERSAL_REFUSED' | 'REFUND_PENDING' | 'REFUND_CHANGE' | 'REFUND_CLOSED' | 'RECONCILIATION' | 'BACKEND_RECONCILIATION' | 'CLOCK' | 'CERT_EXPIRING' | 'DISK';

export interface Problem {
  kind: ProblemKind;
  deviceId: string;
  /** What it is about: an out_trade_no, a refund number, a day, a count. */
  subject: string;
  at: number | null;
}

export interface BoxView {
  box: BoxRecord;
  state: 'online' | 'offline' | 'revoked';
  heartbeat: HeartbeatRecord | null;
  today: Money;
  problems: Problem[];
}

export interface FleetView {
  now: number;
  day: string;
  boxes: BoxView[];
  totals: Money & { online: number; offline: number; revoked: number };
  /** Today's paid fen by China hour 0..23 (chain). */
  byHour: number[];
  /** The last 30 business days, oldest first (chain). */
  byDay: { day: string; money: Money }[];
  problems: Problem[];
}

const zero = (): Money => ({ paidCount: 0, paidFen: 0, refundCount: 0, refundFen: 0, netFen: 0 });

interface Trade {
  deviceId: string;
  outTradeNo: string;
  amountFen: number;
  paidAt: number | null;
  /** Given back (reversed, revoked, closed) after or instead of being paid. */
  undone: boolean;
}

interface RefundSeen {
  deviceId: string;
  outRefundNo: string;
  amountFen: number;
  at: number;
  state: string | null;
  accepted: boolean;
}

/** The backend's view of the trades and refunds in the calls, oldest call first. */
export function readCalls(calls: readonly CallRecord[]): { trades: Map<string, Trade>; refunds: Map<string, RefundSeen>; reversals: Map<string, { deviceId: string; at: number; refused: boolean; pending: boolean }> } {
  const trades = new Map<string, Trade>();
  const refunds = new Map<string, RefundSeen>();
  const reversals = new Map<string, { deviceId: string; at: number; refused: boolean; pending: boolean }>();
  for (const c of calls) {
    if (c.outTradeNo !== null && c.call !== 'refund' && c.call !== 'refundquery') {
      let t = trades.get(c.outTradeNo);
      if (t === undefined) {
        t = { deviceId: c.deviceId, outTradeNo: c.outTradeNo, amountFen: 0, paidAt: null, undone: false };
        trades.set(c.outTradeNo, t);
      }
      if (c.call === 'micropay' && c.amountFen !== null && t.amountFen === 0) t.amountFen = c.amountFen;
      const paid = (c.call === 'micropay' && c.state === 'SUCCESS') || (c.call === 'orderquery' && (c.state === 'SUCCESS' || c.state === 'REFUND'));
      if (paid && t.paidAt === null) t.paidAt = c.at;
      if ((c.call === 'reverse' && c.state === 'REVERSED') || (c.call === 'orderquery' && (c.state === 'REVOKED' || c.state === 'CLOSED' || c.state === 'PAYERROR'))) t.undone = true;
      if (c.call === 'reverse') {
        const done = c.state === 'REVERSED';
        const refused = c.outcome === 'refused' || c.outcome === 'business';
        reversals.set(c.outTradeNo, { deviceId: c.deviceId, at: c.at, refused: refused && !done, pending: !done && !refused });
      }
    }
    if (c.outRefundNo !== null) {
      let r = refunds.get(c.outRefundNo);
      if (r === undefined) {
        r = { deviceId: c.deviceId, outRefundNo: c.outRefundNo, amountFen: 0, at: c.at, state: null, accepted: false };
        refunds.set(c.outRefundNo, r);
      }
      if (c.call === 'refund' && c.amountFen !== null && r.amountFen === 0) r.amountFen = c.amountFen;
      if (c.call === 'refund' && c.state === 'ACCEPTED') {
        r.accepted = true;
        r.at = c.at;
      }
      if (c.call === 'refundquery' && c.state !== null) r.state = c.state;
    }
  }
  return { trades, refunds, reversals };
}

function add(m: Money, paid: number, refunded: number, paidCount: number, refundCount: number): void {
  m.paidFen += paid;
  m.paidCount += paidCount;
  m.refundFen += refunded;
  m.refundCount += refundCount;
  m.netFen = m.paidFen - m.refundFen;
}

function get(map: Map<string, Money>, key: string): Money {
  let m = map.get(key);
  if (m === undefined) map.set(key, (m = zero()));
  return m;
}

/** The last `n` business days ending today, oldest first. */
export function lastDays(today: string, n: number): string[] {
  const days = [today];
  while (days.length < n) days.unshift(previousDay(days[0]!));
  return days;
}

function boxProblems(box: BoxRecord, hb: HeartbeatRecord | null, now: number): Problem[] {
  const p: Problem[] = [];
  const id = box.deviceId;
  if (box.revokedAt !== null) return p;
  if (hb === null) p.push({ kind: 'NEVER_HEARD', deviceId: id, subject: '', at: box.enrolledAt });
  else if (!isOnline(hb.at, now)) p.push({ kind: 'OFFLINE', deviceId: id, subject: '', at: hb.at });
  if (hb !== null) {
    const r = hb.report;
    if (r.health === 'FAULT') p.push({ kind: 'FAULT', deviceId: id, subject: r.healthText, at: hb.at });
    if (r.health === 'OFFLINE') p.push({ kind: 'BOX_OFFLINE', deviceId: id, subject: r.healthText, at: hb.at });
    if (r.pendingReversals > 0) p.push({ kind: 'REVERSAL_PENDING', deviceId: id, subject: String(r.pendingReversals), at: hb.at });
    if (r.pendingRefunds > 0) p.push({ kind: 'REFUND_PENDING', deviceId: id, subject: String(r.pendingRefunds), at: hb.at });
    if (r.reconciliation !== null && r.reconciliation.discrepancies > 0) p.push({ kind: 'RECONCILIATION', deviceId: id, subject: `${r.reconciliation.day}: ${r.reconciliation.discrepancies}`, at: hb.at });
    if (!r.clockSynced) p.push({ kind: 'CLOCK', deviceId: id, subject: '', at: hb.at });
    if (r.diskFreeBytes !== null && r.diskFreeBytes < 100 * 1024 * 1024) p.push({ kind: 'DISK', deviceId: id, subject: `${Math.floor(r.diskFreeBytes / 1048576)} MiB`, at: hb.at });
  }
  if (box.notAfter !== null && box.notAfter - now < CERT_WARNING_MS) p.push({ kind: 'CERT_EXPIRING', deviceId: id, subject: '', at: box.notAfter });
  return p;
}

/** Problems the backend's own journal shows (reversals refused or not finished, refunds CHANGE or closed). */
function callProblems(calls: readonly CallRecord[]): Problem[] {
  const { refunds, reversals } = readCalls(calls);
  const p: Problem[] = [];
  for (const [no, r] of reversals) {
    if (r.refused) p.push({ kind: 'REVERSAL_REFUSED', deviceId: r.deviceId, subject: no, at: r.at });
  }
  for (const r of refunds.values()) {
    if (r.state === 'CHANGE') p.push({ kind: 'REFUND_CHANGE', deviceId: r.deviceId, subject: r.outRefundNo, at: r.at });
    if (r.state === 'REFUNDCLOSE') p.push({ kind: 'REFUND_CLOSED', deviceId: r.deviceId, subject: r.outRefundNo, at: r.at });
  }
  return p;
}

const bucketDay = (bucket: number): string => businessDay(bucket * DAY_MS - CHINA_OFFSET_MS, CHINA);


/**
 * The store's sums as the pages want them (read from its money buckets, a few rows per box): each box's today,
 * the days (chain or one box) and today's hours.
 */
async function sums(store: BackendStore, now: number, days: number, deviceId?: string) {
  const day = businessDay(now, CHINA);
  const dayList = lastDays(day, days);
  const from = dayBounds(dayList[0]!, CHINA).startMs;
  const { startMs: todayStart, endMs: todayEnd } = dayBounds(day, CHINA);
  const only = deviceId === undefined ? { total: true } : { deviceId };
  const [byDayRows, todayRows, byHourRows] = await Promise.all([
    store.moneyBuckets({ from, to: todayEnd, bucketMs: DAY_MS, offsetMs: CHINA_OFFSET_MS, ...only }),
    store.moneyBuckets({ from: todayStart, to: todayEnd, bucketMs: DAY_MS, offsetMs: CHINA_OFFSET_MS, ...(deviceId === undefined ? {} : { deviceId }) }),
    store.moneyBuckets({ from: todayStart, to: todayEnd, bucketMs: HOUR_MS, offsetMs: CHINA_OFFSET_MS, ...only }),
  ]);
  const todayByBox = new Map<string, Money>();
  const byDay = new Map<string, Money>();
  for (const b of byDayRows) add(get(byDay, bucketDay(b.bucket)), b.paidFen, b.refundFen, b.paidCount, b.refundCount);
  for (const b of todayRows) add(get(todayByBox, b.deviceId), b.paidFen, b.refundFen, b.paidCount, b.refundCount);
  const byHour = new Array<number>(24).fill(0);
  for (const b of byHourRows) byHour[((b.bucket % 24) + 24) % 24]! += b.paidFen;
  return { day, from, todayByBox, byDay: dayList.map((d) => ({ day: d, money: byDay.get(d) ?? zero() })), byHour };
}

/**
 * The backend's own discrepancies (`scanbox backend reconcile`, kept per day, the latest run of each): one problem
 * each; deviceId '' for a bill row of no enrolled box.
 */
async function reconciliationProblems(store: BackendStore, fromDay: string, deviceId?: string): Promise<Problem[]> {
  const p: Problem[] = [];
  for (const r of await store.reconciliations({ fromDay })) {
    for (const d of r.discrepancies) {
      if (deviceId !== undefined && d.box !== deviceId) continue;
      p.push({ kind: 'BACKEND_RECONCILIATION', deviceId: d.box ?? '', subject: `${r.day} ${d.kind} ${d.out_refund_no ?? d.out_trade_no}: ${d.what}`, at: r.at });
    }
  }
  return p;
}

/** The whole fleet as of `now`. */
export async function fleetView(store: BackendStore, now: number, days = 30): Promise<FleetView> {
  const s = await sums(store, now, days);
  const [boxes, latest, attention, reconciled] = await Promise.all([
    store.boxes(),
    store.latestHeartbeats(),
    store.attentionCalls({ from: s.from }),
    reconciliationProblems(store, s.byDay[0]!.day),
  ]);
  const heard = new Map(latest.map((h) => [h.deviceId, h]));
  const fromCalls = new Map<string, Problem[]>();
  for (const p of [...callProblems(attention), ...reconciled]) {
    const list = fromCalls.get(p.deviceId);
    if (list === undefined) fromCalls.set(p.deviceId, [p]);
    else list.push(p);
  }
  const known = new Set(boxes.map((b) => b.deviceId));
  const totals = { ...zero(), online: 0, offline: 0, revoked: 0 };
  const views: BoxView[] = boxes.map((box) => {
    const hb = heard.get(box.deviceId) ?? null;
    const state = box.revokedAt !== null ? 'revoked' : isOnline(hb?.at ?? null, now) ? 'online' : 'offline';
    totals[state]++;
    const t = s.todayByBox.get(box.deviceId) ?? zero();
    add(totals, t.paidFen, t.refundFen, t.paidCount, t.refundCount);
    const problems = [...boxProblems(box, hb, now), ...(fromCalls.get(box.deviceId) ?? [])];
    return { box, state, heartbeat: hb, today: t, problems };
  });
  // What names no box (a bill row of no enrolled box) is the chain's problem.
  const unattached = [...fromCalls].filter(([id]) => !known.has(id)).flatMap(([, list]) => list);
  return { now, day: s.day, boxes: views, totals, byHour: s.byHour, byDay: s.byDay, problems: [...views.flatMap((v) => v.problems), ...unattached] };
}

export interface BoxPage {
  view: BoxView;
  byHour: number[];
  byDay: { day: string; money: Money }[];
  heartbeats: HeartbeatRecord[];
  /** The last 50, newest first. */
  calls: CallRecord[];
}

export async function boxPage(store: BackendStore, deviceId: string, now: number, days = 30): Promise<BoxPage | null> {
  const box = await store.box(deviceId);
  if (box === undefined) return null;
  const s = await sums(store, now, days, deviceId);
  const [heartbeats, recent, attention, reconciled] = await Promise.all([
    store.heartbeats(deviceId, { limit: 60 }),
    store.calls({ deviceId, limit: 50 }),
    store.attentionCalls({ from: s.from }),
    reconciliationProblems(store, s.byDay[0]!.day, deviceId),
  ]);
  const hb = heartbeats[0] ?? null;
  const state = box.revokedAt !== null ? 'revoked' : isOnline(hb?.at ?? null, now) ? 'online' : 'offline';
  const view: BoxView = {
    box,
    state,
    heartbeat: hb,
    today: s.todayByBox.get(deviceId) ?? zero(),
    problems: [...boxProblems(box, hb, now), ...callProblems(attention.filter((c) => c.deviceId === deviceId)), ...reconciled],
  };
  return { view, byHour: s.byHour, byDay: s.byDay, heartbeats, calls: recent.reverse() };
}
