import type { MoneyBucketsOptions } from '../store.js';

/**
 * The console's money buckets (schema step 4 of both stores): what each box took and gave back, by the hour and
 * by China's calendar day, kept up to date as calls finish, so that the fleet page sums a few rows per box
 * instead of grouping the day's calls by order.
 *
 * The truth is the calls: an order counts as paid when a verified micropay or orderquery said so (SUCCESS, or
 * REFUND for an orderquery) and no reverse REVERSED nor orderquery REVOKED, CLOSED or PAYERROR gave it back,
 * with its micropay's total_fee, at the time of its first paying call; a refund counts when WeChat Pay accepted
 * it and no refundquery said CHANGE or REFUNDCLOSE, with its refund_fee, at the time of its acceptance. Calls
 * the backend refused never reached WeChat Pay and are left out.
 *
 * `money_items` holds what each order (kind 'paid') and refund ('refund') adds now; `money_hours` and
 * `money_days` the sums of the items by box and hour, and by box and China day. When a call about an order or
 * a refund finishes, its item is worked out again from all of its calls (`truthSql`) and, when it changed, the
 * old one is taken off the sums and the new one put on: a call recorded twice, or an outcome that changes
 * nothing, moves nothing. SQLite does it in the transaction that records the outcome; PostgreSQL lists the order
 * or refund in that statement (schema step 5) and settles the list in batches (postgres.ts, settleMoney).
 */

export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;
/** China's offset from UTC (no daylight saving): its calendar day is floor((t + CHINA_OFFSET_MS) / DAY_MS). */
export const CHINA_OFFSET_MS = 8 * HOUR_MS;

export type MoneyKind = 'paid' | 'refund';

/** The calls whose finish may change an item: the order's (micropay, orderquery, reverse) and the refund's. */
export function moneyKeyOf(call: string, outTradeNo: string | null, outRefundNo: string | null): { kind: MoneyKind; no: string } | null {
  if ((call === 'micropay' || call === 'orderquery' || call === 'reverse') && outTradeNo !== null) return { kind: 'paid', no: outTradeNo };
  if ((call === 'refund' || call === 'refundquery') && outRefundNo !== null) return { kind: 'refund', no: outRefundNo };
  return null;
}

/**
 * The items the calls make, for every order and refund (`where` '1 = 1') or one (`where` naming its key):
 * columns kind, no, device_id, at, amount. The same SQL in SQLite and PostgreSQL.
 */
export function truthSql(kind: MoneyKind | 'both', tradeWhere: string, refundWhere: string): string {
  const paid = `SELECT 'paid' AS kind, out_trade_no AS no, device_id, paid_at AS at, amount FROM (
      SELECT out_trade_no, max(device_id) AS device_id,
        min(CASE WHEN (call = 'micropay' AND state = 'SUCCESS') OR (call = 'orderquery' AND state IN ('SUCCESS', 'REFUND')) THEN at END) AS paid_at,
        max(CASE WHEN call = 'micropay' THEN amount_fen END) AS amount,
        max(CASE WHEN (call = 'reverse' AND state = 'REVERSED') OR (call = 'orderquery' AND state IN ('REVOKED', 'CLOSED', 'PAYERROR')) THEN 1 ELSE 0 END) AS undone
      FROM calls
      WHERE out_trade_no IS NOT NULL AND call IN ('micropay', 'orderquery', 'reverse') AND outcome <> 'refused' AND (${tradeWhere})
      GROUP BY out_trade_no) t
    WHERE paid_at IS NOT NULL AND undone = 0 AND amount > 0`;
  const refund = `SELECT 'refund' AS kind, out_refund_no AS no, device_id, accepted_at AS at, amount FROM (
      SELECT out_refund_no, max(CASE WHEN call = 'refund' THEN device_id END) AS device_id,
        min(CASE WHEN call = 'refund' AND state = 'ACCEPTED' THEN at END) AS accepted_at,
        max(CASE WHEN call = 'refund' THEN amount_fen END) AS amount,
        max(CASE WHEN call = 'refundquery' AND state IN ('CHANGE', 'REFUNDCLOSE') THEN 1 ELSE 0 END) AS failed
      FROM calls
      WHERE out_refund_no IS NOT NULL AND call IN ('refund', 'refundquery') AND outcome <> 'refused' AND (${refundWhere})
      GROUP BY out_refund_no) r
    WHERE accepted_at IS NOT NULL AND failed = 0 AND amount > 0`;
  return kind === 'paid' ? paid : kind === 'refund' ? refund : `${paid}\n    UNION ALL\n    ${refund}`;
}

/** The sums of money_items into money_hours and money_days (after the items were filled from the calls). */
export const SUM_ITEMS_SQL = `
  INSERT INTO money_hours (device_id, hour, paid_count, paid_fen, refund_count, refund_fen)
    SELECT device_id, at / ${HOUR_MS},
      sum(CASE WHEN kind = 'paid' THEN 1 ELSE 0 END), sum(CASE WHEN kind = 'paid' THEN amount_fen ELSE 0 END),
      sum(CASE WHEN kind = 'refund' THEN 1 ELSE 0 END), sum(CASE WHEN kind = 'refund' THEN amount_fen ELSE 0 END)
    FROM money_items GROUP BY device_id, at / ${HOUR_MS};
  INSERT INTO money_days (device_id, day, paid_count, paid_fen, refund_count, refund_fen)
    SELECT device_id, (at + ${CHINA_OFFSET_MS}) / ${DAY_MS},
      sum(CASE WHEN kind = 'paid' THEN 1 ELSE 0 END), sum(CASE WHEN kind = 'paid' THEN amount_fen ELSE 0 END),
      sum(CASE WHEN kind = 'refund' THEN 1 ELSE 0 END), sum(CASE WHEN kind = 'refund' THEN amount_fen ELSE 0 END)
    FROM money_items GROUP BY device_id, (at + ${CHINA_OFFSET_MS}) / ${DAY_MS};`;

/** Fills the items from every call there is, then their sums (schema step 4 of both stores, and migrate). */
export const FILL_MONEY_SQL = `
  INSERT INTO money_items (kind, no, device_id, at, amount_fen)
    ${truthSql('both', '1 = 1', '1 = 1')};
  ${SUM_ITEMS_SQL}`;

/**
 * Which table and range a moneyBuckets request reads: hours for an hour's buckets, days for China days; the
 * window must be on the table's boundaries (the console asks for nothing else). Throws TypeError otherwise.
 */
export function bucketPlan(o: MoneyBucketsOptions): { table: 'money_hours' | 'money_days'; column: 'hour' | 'day'; lo: number; hi: number; toBucket: (unit: number) => number } {
  const { from, to, bucketMs, offsetMs } = o;
  if (![from, to, bucketMs, offsetMs].every(Number.isSafeInteger)) throw new TypeError('moneyBuckets: whole ms');
  if (bucketMs === DAY_MS && offsetMs === CHINA_OFFSET_MS) {
    if ((from + CHINA_OFFSET_MS) % DAY_MS !== 0 || (to + CHINA_OFFSET_MS) % DAY_MS !== 0) throw new TypeError('moneyBuckets by the day: from and to must be China midnights');
    return { table: 'money_days', column: 'day', lo: (from + CHINA_OFFSET_MS) / DAY_MS, hi: (to + CHINA_OFFSET_MS) / DAY_MS, toBucket: (day) => day };
  }
  if (bucketMs === HOUR_MS && offsetMs % HOUR_MS === 0) {
    if (from % HOUR_MS !== 0 || to % HOUR_MS !== 0) throw new TypeError('moneyBuckets by the hour: from and to must be whole hours');
    const shift = offsetMs / HOUR_MS;
    return { table: 'money_hours', column: 'hour', lo: from / HOUR_MS, hi: to / HOUR_MS, toBucket: (hour) => hour + shift };
  }
  throw new TypeError('moneyBuckets: by the hour (offset whole hours) or by China day only');
}
