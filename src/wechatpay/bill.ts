import { parseYuan } from '../money.js';

/**
 * WeChat Pay V2's daily bill (downloadbill, after-the-sale.md §3): read into rows with integer fen, checked
 * against its own summary, and cut down to some of its rows (cutBill, for a backend that serves one box its
 * share of the merchant's bill).
 *
 * The format, as WeChat Pay writes it and as the bills quoted in public projects show it:
 * - a header row of column names, one row per trade, a summary header (`总交易单数,...`) and one summary row;
 * - every value of a trade or summary row starts with a backtick (`` `2019-07-25 08:35:41``), so a value may
 *   hold a plain comma: rows are split on `` ,` ``; header lines have none;
 * - lines end with CRLF or LF, the last one with or without its end; the text may begin with a UTF-8 BOM;
 * - amounts are yuan (`6.00`), written loosely in the summary (`0.0`, `0.47`, a count as `45.0`); the fee
 *   column has five decimals and may hold a fraction of a fen (`0.05940`), the fee total may be negative
 *   (`-0.02000`); refund rows carry `0.00` in the order amounts and a negative fee; times may carry
 *   full-width colons (`16：33：45`, the official example);
 * - the layouts: today's ALL (27 columns), SUCCESS (20: no refund columns) and REFUND (29: 退款申请时间 and
 *   退款成功时间 after 代金券金额), each with a 7-field summary (the official page shows SUCCESS with 4), and the
 *   legacy ALL of older merchants (24 columns: 总金额, 代金券或立减优惠金额, 子商户号 ...; a 5-field summary
 *   总交易单数,总交易额,总退款金额,总代金券或立减优惠退款金额,手续费总金额). Every column and summary field is
 *   found by its name, never by its position.
 *
 * Choices made here:
 * - What reconciliation relies on must be exact, else BillError naming the line and the column: 商户订单号
 *   and 交易状态 (never empty), the amounts 应结订单金额 (or 总金额), 订单金额, 退款金额 and 申请退款金额 (whole
 *   fen), and on a REFUND row 商户退款单号 and a refund amount. A column nothing relies on (the fee, the rate,
 *   the coupons, the time) never fails the bill: a value of it that cannot be read is null or kept as text.
 * - A bill is checked against itself: it must end with its summary, and the summary's row count and its totals
 *   of the settlement, refund, requested-refund and order amounts must equal its rows' to the fen. A bill that
 *   disagrees (a download cut short or damaged) is a BillError naming the summary's line and field with both
 *   figures. The fee total is not checked: real bills' fee totals are not the sum of their rows' rounded fees.
 * - Text columns stay strings exactly as the bill writes them ('' when the column is absent). Trade rows
 *   write `0` in the refund-number columns; that `0` is kept.
 * - An amount column that is absent, or a cell left empty, is null: the bill says nothing about it. The one
 *   essential amount (settlementFen, and orderFen which falls back to it) is never null.
 * - Every error is a BillError naming the line and the column, quoting at most a short piece of a value.
 */

export class BillError extends Error {
  readonly code = 'BAD_BILL';
  /** 1-based line of the bill text (after a byte-order mark), null when the error is about the whole bill. */
  readonly line: number | null;
  /** The column's name as the bill's header writes it, when one column is at fault. */
  readonly column: string | null;
  constructor(message: string, line: number | null = null, column: string | null = null) {
    const where = line === null ? '' : column === null ? `line ${line}: ` : `line ${line}, column ${column}: `;
    super(where + message);
    this.name = 'BillError';
    this.line = line;
    this.column = column;
  }
}

/** The 27 columns of a current bill_type=ALL bill, in WeChat Pay's order. */
export const BILL_COLUMNS: readonly string[] = Object.freeze([
  '交易时间',
  '公众账号ID',
  '商户号',
  '特约商户号',
  '设备号',
  '微信订单号',
  '商户订单号',
  '用户标识',
  '交易类型',
  '交易状态',
  '付款银行',
  '货币种类',
  '应结订单金额',
  '代金券金额',
  '微信退款单号',
  '商户退款单号',
  '退款金额',
  '充值券退款金额',
  '退款类型',
  '退款状态',
  '商品名称',
  '商户数据包',
  '手续费',
  '费率',
  '订单金额',
  '申请退款金额',
  '费率备注',
]);

/** The summary header of a current bill. */
export const BILL_SUMMARY_COLUMNS: readonly string[] = Object.freeze([
  '总交易单数',
  '应结订单总金额',
  '退款总金额',
  '充值券退款总金额',
  '手续费总金额',
  '订单总金额',
  '申请退款总金额',
]);

/** SUCCESS: paid; REFUND: a refund row (the refund columns are filled); REVOKED: paid, then reversed. */
export type BillTradeState = 'SUCCESS' | 'REFUND' | 'REVOKED' | (string & {});

export interface BillRow {
  /** Line of the bill text this row was read from (1-based), for reports. */
  line: number;
  /** 交易时间, China time, as the bill writes it (`YYYY-MM-DD HH:mm:ss`), full-width colons made `:`; '' when absent. */
  time: string;
  appId: string;
  mchId: string;
  /** 特约商户号 (older bills: 子商户号); `0` when the merchant is not a sub-merchant. */
  subMchId: string;
  /** 设备号: the box's device_info. */
  deviceInfo: string;
  /** 微信订单号: 28 digits, beyond 2^53, so a string. */
  transactionId: string;
  outTradeNo: string;
  /** 用户标识: the payer's openid. */
  openId: string;
  tradeType: string;
  tradeState: BillTradeState;
  bankType: string;
  currency: string;
  /** 应结订单金额 (older bills: 总金额); falls back to 订单金额 when the bill has neither. 0 on a refund row. */
  settlementFen: number;
  /** 代金券金额; null when absent, empty or not an amount (nothing relies on it). */
  couponFen: number | null;
  /** 微信退款单号: `0` on a trade row. */
  refundId: string;
  outRefundNo: string;
  /** 退款金额. */
  refundFen: number | null;
  /** 充值券退款金额; null when absent, empty or not an amount (nothing relies on it). */
  couponRefundFen: number | null;
  refundType: string;
  /** 退款状态 when the row was written: the refund's final state comes from refundquery. */
  refundStatus: string;
  /** 商品名称. */
  body: string;
  /** 商户数据包: the order's attach. */
  attach: string;
  /** 手续费 in whole fen, negative on refund rows; null when absent, empty, not an amount or not whole fen (`0.05940`). */
  feeFen: number | null;
  /** 费率, as written (`0.60%`). */
  rate: string;
  /** 订单金额; falls back to settlementFen when the bill has no such column. */
  orderFen: number;
  /** 申请退款金额. */
  requestedRefundFen: number | null;
  /** 费率备注. */
  rateRemark: string;
  /** Columns this parser does not know (退款申请时间 of a REFUND bill, anything new), by their header name. */
  extra: Record<string, string>;
}

export interface BillSummary {
  /** 总交易单数: the trade rows, refund rows included. */
  count: number;
  /** 应结订单总金额 (older bills: 总交易额). */
  settlementFen: number;
  refundFen: number | null;
  couponRefundFen: number | null;
  feeFen: number | null;
  /** 订单总金额; falls back to settlementFen when absent. */
  orderFen: number;
  requestedRefundFen: number | null;
  extra: Record<string, string>;
}

export interface Bill {
  /** The header row's column names, as written (without a byte-order mark or backticks). */
  header: string[];
  rows: BillRow[];
  /** null when the bill has no summary. */
  summary: BillSummary | null;
}

type TextField =
  | 'appId'
  | 'mchId'
  | 'subMchId'
  | 'deviceInfo'
  | 'transactionId'
  | 'openId'
  | 'tradeType'
  | 'bankType'
  | 'currency'
  | 'refundId'
  | 'outRefundNo'
  | 'refundType'
  | 'refundStatus'
  | 'body'
  | 'attach'
  | 'rate'
  | 'rateRemark';
/** Amounts reconciliation relies on: exact or the bill fails. */
type ExactAmount = 'refundFen' | 'requestedRefundFen';
/** Amounts nothing relies on: null when they cannot be read. */
type LooseAmount = 'couponFen' | 'couponRefundFen' | 'feeFen';

/** Each field with the names it has had, the current one first. */
const TEXT_COLUMNS: ReadonlyArray<[TextField, readonly string[]]> = [
  ['appId', ['公众账号ID']],
  ['mchId', ['商户号']],
  ['subMchId', ['特约商户号', '子商户号']],
  ['deviceInfo', ['设备号']],
  ['transactionId', ['微信订单号']],
  ['openId', ['用户标识']],
  ['tradeType', ['交易类型']],
  ['bankType', ['付款银行']],
  ['currency', ['货币种类']],
  ['refundId', ['微信退款单号']],
  ['outRefundNo', ['商户退款单号']],
  ['refundType', ['退款类型']],
  ['refundStatus', ['退款状态']],
  ['body', ['商品名称']],
  ['attach', ['商户数据包']],
  ['rate', ['费率']],
  ['rateRemark', ['费率备注']],
];
const COUPON_NAMES = ['代金券金额', '代金券或立减优惠金额', '企业红包金额'];
const REFUND_NAMES = ['退款金额'];
const COUPON_REFUND_NAMES = ['充值券退款金额', '代金券或立减优惠退款金额', '企业红包退款金额'];
const FEE_NAMES = ['手续费'];
const REQUESTED_REFUND_NAMES = ['申请退款金额'];
const EXACT_AMOUNTS: ReadonlyArray<[ExactAmount, readonly string[]]> = [
  ['refundFen', REFUND_NAMES],
  ['requestedRefundFen', REQUESTED_REFUND_NAMES],
];
const LOOSE_AMOUNTS: ReadonlyArray<[LooseAmount, readonly string[]]> = [
  ['couponFen', COUPON_NAMES],
  ['couponRefundFen', COUPON_REFUND_NAMES],
  ['feeFen', FEE_NAMES],
];
const TIME_NAMES = ['交易时间'];
const OUT_TRADE_NO_NAMES = ['商户订单号'];
const OUT_REFUND_NO_NAMES = ['商户退款单号'];
const STATE_NAMES = ['交易状态'];
const SETTLEMENT_NAMES = ['应结订单金额', '总金额'];
const ORDER_NAMES = ['订单金额'];

const SUMMARY_COUNT_NAMES = ['总交易单数'];
const SUMMARY_SETTLEMENT_NAMES = ['应结订单总金额', '总交易额'];
const SUMMARY_ORDER_NAMES = ['订单总金额'];
const SUMMARY_REFUND_NAMES = ['退款总金额', '总退款金额'];
const SUMMARY_REQUESTED_NAMES = ['申请退款总金额'];
const SUMMARY_COUPON_REFUND_NAMES = ['充值券退款总金额', '总代金券或立减优惠退款金额', '总企业红包退款金额'];
const SUMMARY_FEE_NAMES = ['手续费总金额'];
const SUMMARY_COUPON_NAMES = ['代金券总金额', '总代金券或立减优惠金额', '总企业红包金额'];

/**
 * Each summary field with the row columns it adds up and the decimals it is written with: what cutBill
 * recomputes. A summary field not here cannot be recomputed (cutBill refuses the bill).
 */
const SUMMARY_SOURCES: ReadonlyArray<[readonly string[], readonly string[], 2 | 5]> = [
  [SUMMARY_SETTLEMENT_NAMES, [...SETTLEMENT_NAMES, ...ORDER_NAMES], 2],
  [SUMMARY_REFUND_NAMES, REFUND_NAMES, 2],
  [SUMMARY_COUPON_REFUND_NAMES, COUPON_REFUND_NAMES, 2],
  [SUMMARY_FEE_NAMES, FEE_NAMES, 5],
  [SUMMARY_ORDER_NAMES, [...ORDER_NAMES, ...SETTLEMENT_NAMES], 2],
  [SUMMARY_REQUESTED_NAMES, REQUESTED_REFUND_NAMES, 2],
  [SUMMARY_COUPON_NAMES, COUPON_NAMES, 2],
];

const SUMMARY_MARK = '总交易单数';
/** A count as the summary writes it: `45`, or loosely `45.0`. */
const COUNT_TEXT = /^([0-9]{1,15})(?:\.0*)?$/;

/** The summary header is plain text whose first name is 总交易单数 (backticked by some exporters). */
function isSummaryHeader(line: string): boolean {
  const start = line.charCodeAt(0) === 96 ? 1 : 0;
  if (!line.startsWith(SUMMARY_MARK, start)) return false;
  const end = start + SUMMARY_MARK.length;
  return line.length === end || line.charCodeAt(end) === 44;
}

/** A value quoted in a message: short, on one line. */
function quote(value: string): string {
  const clipped = value.length > 40 ? `${value.slice(0, 40)}...` : value;
  return JSON.stringify(clipped);
}

/** Where each known name sits in a header, and which positions nobody claimed. */
class Columns {
  readonly names: string[];
  private readonly index = new Map<string, number>();
  private readonly claimed = new Set<number>();

  constructor(names: string[], line: number) {
    this.names = names;
    names.forEach((name, i) => {
      if (name === '') throw new BillError(`column ${i + 1} of the header has no name`, line);
      if (this.index.has(name)) throw new BillError(`the header names ${quote(name)} twice`, line);
      this.index.set(name, i);
    });
  }

  /** The position of the first of `names` present, claimed so it is not reported as extra; -1 when absent. */
  find(names: readonly string[]): number {
    for (const name of names) {
      const at = this.index.get(name);
      if (at !== undefined) {
        this.claimed.add(at);
        return at;
      }
    }
    return -1;
  }

  require(names: readonly string[], what: string, line: number): number {
    const at = this.find(names);
    if (at < 0) throw new BillError(`the ${what} has no column ${names.join(' or ')}`, line);
    return at;
  }

  /** [position, name] of every column no field claimed. */
  unclaimed(): Array<[number, string]> {
    const out: Array<[number, string]> = [];
    this.names.forEach((name, i) => {
      if (!this.claimed.has(i)) out.push([i, name]);
    });
    return out;
  }
}

/**
 * The values of a trade or summary row, each without its leading backtick.
 * A row with backticks is split on `` ,` `` only (a value may hold a plain comma); a row written without
 * them (re-exported by a spreadsheet) on commas.
 */
function splitRow(line: string): string[] {
  let values: string[];
  if (line.includes(',`')) {
    values = line.split(',`');
    if (values[0]!.charCodeAt(0) === 96) values[0] = values[0]!.slice(1);
  } else {
    values = line.split(',');
    for (let i = 0; i < values.length; i++) if (values[i]!.charCodeAt(0) === 96) values[i] = values[i]!.slice(1);
  }
  return values;
}

function headerNames(line: string): string[] {
  const names = line.split(',');
  for (let i = 0; i < names.length; i++) {
    let name = names[i]!.trim();
    // Some exporters backtick the header too.
    if (name.charCodeAt(0) === 96) name = name.slice(1);
    names[i] = name;
  }
  return names;
}

function amount(value: string, line: number, column: string): number {
  const fen = parseYuan(value);
  if (fen === null) throw new BillError(`not an amount in yuan to the fen: ${quote(value)}`, line, column);
  return fen;
}

/** An amount reconciliation relies on: null when the column is absent or the cell empty, else exact. */
function exactAmount(values: string[], at: number, line: number, columns: Columns): number | null {
  if (at < 0) return null;
  const value = values[at]!;
  return value === '' ? null : amount(value, line, columns.names[at]!);
}

/** An amount nothing relies on: null when absent, empty or not whole fen. */
function looseAmount(values: string[], at: number): number | null {
  return at < 0 ? null : parseYuan(values[at]!);
}

function required(values: string[], at: number, line: number, columns: Columns): string {
  const value = values[at]!;
  if (value === '') throw new BillError('empty, but every row must have it', line, columns.names[at]!);
  return value;
}

interface RowReader {
  (values: string[], line: number): BillRow;
}

function rowReader(columns: Columns, headerLine: number): RowReader {
  const time = columns.find(TIME_NAMES);
  const outTradeNo = columns.require(OUT_TRADE_NO_NAMES, 'header', headerLine);
  const state = columns.require(STATE_NAMES, 'header', headerLine);
  const settlement = columns.find(SETTLEMENT_NAMES);
  const order = columns.find(ORDER_NAMES);
  if (settlement < 0 && order < 0) {
    throw new BillError(`the header has no amount column (${[...SETTLEMENT_NAMES, ...ORDER_NAMES].join(', ')})`, headerLine);
  }
  const outRefundNo = columns.find(OUT_REFUND_NO_NAMES);
  const refund = columns.find(REFUND_NAMES);
  const requested = columns.find(REQUESTED_REFUND_NAMES);
  const texts = TEXT_COLUMNS.map(([field, names]) => [field, columns.find(names)] as const);
  const exact = EXACT_AMOUNTS.map(([field, names]) => [field, columns.find(names)] as const);
  const loose = LOOSE_AMOUNTS.map(([field, names]) => [field, columns.find(names)] as const);
  const extras = columns.unclaimed();
  return (values, line) => {
    const settlementFen = settlement >= 0 ? amount(required(values, settlement, line, columns), line, columns.names[settlement]!) : -1;
    const orderFen = order >= 0 ? amount(required(values, order, line, columns), line, columns.names[order]!) : settlementFen;
    const tradeState = required(values, state, line, columns);
    const row = {
      line,
      // Full-width colons, as in the official example (`16：33：45`), read as the colons they mean.
      time: time < 0 ? '' : values[time]!.replace(/：/g, ':'),
      outTradeNo: required(values, outTradeNo, line, columns),
      tradeState,
      settlementFen: settlement >= 0 ? settlementFen : orderFen,
      orderFen,
      extra: {} as Record<string, string>,
    } as BillRow;
    for (const [field, at] of texts) row[field] = at < 0 ? '' : values[at]!;
    for (const [field, at] of exact) row[field] = exactAmount(values, at, line, columns);
    for (const [field, at] of loose) row[field] = looseAmount(values, at);
    for (const [at, name] of extras) row.extra[name] = values[at]!;
    if (tradeState === 'REFUND') {
      // A refund row is matched by its number and amount: both must be there.
      if (outRefundNo >= 0) required(values, outRefundNo, line, columns);
      if (row.requestedRefundFen === null && row.refundFen === null) {
        const at = requested >= 0 ? requested : refund;
        throw new BillError(
          at >= 0 ? 'empty, but a REFUND row must have its amount' : 'a REFUND row in a bill without a refund amount column',
          line,
          at >= 0 ? columns.names[at]! : null,
        );
      }
    }
    return row;
  };
}

/** What readSummary found where, for the self-check's messages. */
interface SummaryRead {
  summary: BillSummary;
  line: number;
  /** The summary field's name as written, by what it totals. */
  names: { count: string; settlement: string | null; order: string | null; refund: string | null; requested: string | null };
}

function readSummary(names: string[], values: string[], line: number, headerLine: number): SummaryRead {
  const columns = new Columns(names, headerLine);
  const count = columns.require(SUMMARY_COUNT_NAMES, 'summary header', headerLine);
  const settlement = columns.find(SUMMARY_SETTLEMENT_NAMES);
  const order = columns.find(SUMMARY_ORDER_NAMES);
  if (settlement < 0 && order < 0) throw new BillError('the summary header has no total amount column', headerLine);
  const countText = values[count]!;
  const counted = COUNT_TEXT.exec(countText);
  if (counted === null) throw new BillError(`not a count: ${quote(countText)}`, line, names[count]!);
  const settlementFen = settlement >= 0 ? amount(required(values, settlement, line, columns), line, names[settlement]!) : -1;
  const orderFen = order >= 0 ? amount(required(values, order, line, columns), line, names[order]!) : settlementFen;
  const refund = columns.find(SUMMARY_REFUND_NAMES);
  const requested = columns.find(SUMMARY_REQUESTED_NAMES);
  const summary: BillSummary = {
    count: Number(counted[1]),
    settlementFen: settlement >= 0 ? settlementFen : orderFen,
    refundFen: exactAmount(values, refund, line, columns),
    couponRefundFen: looseAmount(values, columns.find(SUMMARY_COUPON_REFUND_NAMES)),
    feeFen: looseAmount(values, columns.find(SUMMARY_FEE_NAMES)),
    orderFen,
    requestedRefundFen: exactAmount(values, requested, line, columns),
    extra: {},
  };
  for (const [at, name] of columns.unclaimed()) summary.extra[name] = values[at]!;
  const nameAt = (at: number): string | null => (at < 0 ? null : names[at]!);
  return {
    summary,
    line,
    names: { count: names[count]!, settlement: nameAt(settlement), order: nameAt(order), refund: nameAt(refund), requested: nameAt(requested) },
  };
}

/** What the rows add up to, for the self-check. */
interface Totals {
  count: number;
  settlementFen: number;
  orderFen: number;
  refundFen: number;
  requestedRefundFen: number;
}

function addRow(totals: Totals, row: BillRow): void {
  totals.count += 1;
  totals.settlementFen += row.settlementFen;
  totals.orderFen += row.orderFen;
  totals.refundFen += row.refundFen ?? 0;
  totals.requestedRefundFen += row.requestedRefundFen ?? 0;
}

function yuanText(fen: number): string {
  const sign = fen < 0 ? '-' : '';
  const abs = Math.abs(fen);
  return `${sign}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, '0')}`;
}

/**
 * The summary against the rows: count, settlement, order, refund and requested-refund totals, to the fen.
 * Throws a BillError on the summary row naming the field and both figures.
 */
function checkWhole(read: SummaryRead, totals: Totals): void {
  const { summary, line, names } = read;
  const notWhole = (column: string, said: string, rows: string): BillError =>
    new BillError(`the bill is not whole: its summary says ${said}, its rows ${rows} (a download cut short or damaged)`, line, column);
  if (summary.count !== totals.count) {
    throw notWhole(names.count, `${summary.count} row(s)`, `are ${totals.count}`);
  }
  const amounts: Array<[string | null, number | null, number]> = [
    [names.settlement, summary.settlementFen, totals.settlementFen],
    [names.order, summary.orderFen, totals.orderFen],
    [names.refund, summary.refundFen, totals.refundFen],
    [names.requested, summary.requestedRefundFen, totals.requestedRefundFen],
  ];
  for (const [name, said, sum] of amounts) {
    // An empty summary value says nothing; a field the summary does not have is not checked.
    if (name === null || said === null) continue;
    if (said !== sum) throw notWhole(name, `${yuanText(said)} yuan`, `add up to ${yuanText(sum)} yuan`);
  }
}

/** The lines of a text, cut one at a time (not split into an array of all of them at once). */
class Lines {
  /** 1-based number of the line last returned. */
  n = 0;
  private cursor = 0;
  constructor(private readonly body: string) {}

  /** The next line that is not blank, without its line end; null at the end. */
  next(): string | null {
    const body = this.body;
    while (this.cursor < body.length) {
      let end = body.indexOf('\n', this.cursor);
      if (end === -1) end = body.length;
      let line = body.slice(this.cursor, end);
      this.cursor = end + 1;
      this.n++;
      if (line.charCodeAt(line.length - 1) === 13) line = line.slice(0, -1);
      if (line.trim() !== '') return line;
    }
    return null;
  }
}

interface Scanned {
  header: string[];
  headerText: string;
  summaryHeaderText: string;
  summaryValues: string[];
  summaryRead: SummaryRead;
  /** The summary row began with a backtick. */
  summaryTicked: boolean;
}

/**
 * Reads the whole text, calling `each` with every trade row and its line as written, checks the summary
 * against the rows, and returns what cutBill needs to write the bill again.
 */
function scan(text: string, each: (row: BillRow, raw: string, values: string[]) => void): Scanned {
  if (typeof text !== 'string') throw new BillError('the bill is not text');
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  if (/^\s*<(\?xml|xml)/.test(body)) throw new BillError('not a bill: an XML answer (a downloadbill failure?)');
  const lines = new Lines(body);
  const headerText = lines.next();
  if (headerText === null) throw new BillError('the bill is empty');
  const headerLine = lines.n;
  const header = headerNames(headerText);
  if (isSummaryHeader(headerText)) throw new BillError('the bill starts with its summary: no header row', headerLine);
  const columns = new Columns(header, headerLine);
  const read = rowReader(columns, headerLine);
  const width = header.length;
  const totals: Totals = { count: 0, settlementFen: 0, orderFen: 0, refundFen: 0, requestedRefundFen: 0 };

  let lastLine = headerLine;
  for (let line = lines.next(); line !== null; line = lines.next()) {
    const at = lines.n;
    lastLine = at;
    if (isSummaryHeader(line)) {
      const names = headerNames(line);
      const summaryHeaderLine = at;
      const valuesText = lines.next();
      if (valuesText === null) throw new BillError('the summary header is not followed by a summary row (a download cut short?)', summaryHeaderLine);
      const values = splitRow(valuesText);
      if (values.length !== names.length) {
        throw new BillError(`the summary row has ${values.length} values, its header ${names.length} columns`, lines.n);
      }
      const summaryRead = readSummary(names, values, lines.n, summaryHeaderLine);
      const summaryLine = lines.n;
      if (lines.next() !== null) throw new BillError('text after the summary row', summaryLine);
      checkWhole(summaryRead, totals);
      return { header, headerText, summaryHeaderText: line, summaryValues: values, summaryRead, summaryTicked: valuesText.charCodeAt(0) === 96 };
    }
    const values = splitRow(line);
    if (values.length !== width) throw new BillError(`the row has ${values.length} values, the header ${width} columns`, at);
    const row = read(values, at);
    addRow(totals, row);
    each(row, line, values);
  }
  throw new BillError(`the bill ends without its summary (总交易单数 ...) after ${totals.count} row(s): a download cut short?`, lastLine);
}

/**
 * Reads a bill's text (as downloadbill answers it, already gunzipped) into its rows and summary, and checks
 * the summary against the rows. Throws BillError for anything that is not a whole bill; never anything else.
 *
 * `each`: called with every trade row as it is read, and the rows are then not kept in the result (`rows` is
 * empty): a bill of a busy merchant is tens of thousands of rows of 27 fields, and a caller that needs a few
 * fields of each keeps only those. A row passed to `each` may still belong to a bill that turns out not to be
 * whole: act on the rows only once parseBill has returned.
 */
export function parseBill(text: string, each?: (row: BillRow) => void): Bill {
  const rows: BillRow[] = [];
  const scanned = scan(text, each ? (row) => each(row) : (row) => void rows.push(row));
  return { header: scanned.header, rows, summary: scanned.summaryRead.summary };
}

/**
 * A decimal as the bill writes it, in 1e-5 yuan (the fee's five decimals), exactly; null for anything else
 * (more than five decimals, not a number).
 */
function hundredThousandths(value: string): number | null {
  const match = /^(-?)([0-9]{1,15})(?:\.([0-9]{0,5}))?$/.exec(value);
  if (match === null) return null;
  const units = Number(match[2]!) * 100_000 + Number((match[3] ?? '').padEnd(5, '0'));
  if (!Number.isSafeInteger(units)) return null;
  return match[1] === '-' && units !== 0 ? -units : units;
}

function decimalText(units: number, decimals: 2 | 5): string {
  const sign = units < 0 ? '-' : '';
  const abs = Math.abs(units);
  const whole = Math.floor(abs / 100_000);
  const fraction = String(abs % 100_000).padStart(5, '0');
  return `${sign}${whole}.${fraction.slice(0, decimals)}`;
}

/**
 * The bill cut down to the rows `keep` accepts, in the same layout: its byte-order mark, header line and
 * summary header as they were, the kept rows verbatim and in order, and the summary row written again for the
 * kept rows (the count, and every total the summary has, summed from the kept rows' columns: amounts with 2
 * decimals, the fee total with 5, backticked as the original was). The line end is the bill's own (CRLF when
 * its first line ended so), and the text ends with one.
 *
 * The bill must be whole first (parseBill's rules and its self-check): a damaged bill is never made into a
 * whole-looking one. Throws BillError for such a bill, for a summary field it does not know how to total, and
 * for a kept row whose value of a column the summary totals cannot be read to 1e-5 yuan.
 */
export function cutBill(text: string, keep: (row: BillRow) => boolean): string {
  if (typeof text !== 'string') throw new BillError('the bill is not text');
  const bom = text.charCodeAt(0) === 0xfeff ? '\ufeff' : '';
  const firstEnd = text.indexOf('\n');
  const eol = firstEnd > 0 && text.charCodeAt(firstEnd - 1) === 13 ? '\r\n' : '\n';
  const kept: string[] = [];
  const keptValues: Array<{ values: string[]; line: number }> = [];
  const scanned = scan(text, (row, raw, values) => {
    if (keep(row)) {
      kept.push(raw);
      keptValues.push({ values, line: row.line });
    }
  });
  const header = scanned.header;
  const summaryNames = headerNames(scanned.summaryHeaderText);
  const out = scanned.summaryValues.map((_, i) => {
    const name = summaryNames[i]!;
    if (SUMMARY_COUNT_NAMES.includes(name)) return String(kept.length);
    const source = SUMMARY_SOURCES.find(([names]) => names.includes(name));
    if (source === undefined) {
      throw new BillError(`the summary field ${quote(name)} cannot be recomputed for the kept rows`, scanned.summaryRead.line, name);
    }
    const [, rowNames, decimals] = source;
    const at = rowNames.map((n) => header.indexOf(n)).find((i) => i >= 0) ?? -1;
    let units = 0;
    if (at >= 0) {
      for (const { values, line } of keptValues) {
        const value = values[at]!;
        if (value === '') continue;
        const read = hundredThousandths(value);
        if (read === null) throw new BillError(`not an amount the summary can total: ${quote(value)}`, line, header[at]!);
        units += read;
        if (!Number.isSafeInteger(units)) throw new BillError(`the kept rows' total is too large`, line, header[at]!);
      }
    }
    return decimalText(units, decimals);
  });
  const summaryRow = out.map((v) => (scanned.summaryTicked ? '`' + v : v)).join(',');
  return bom + [scanned.headerText, ...kept, scanned.summaryHeaderText, summaryRow].join(eol) + eol;
}
