import { parseYuan } from '../money.js';

/**
 * WeChat Pay V2's daily bill (downloadbill, after-the-sale.md §3) read into rows with integer fen.
 *
 * The format, as WeChat Pay writes it and as the bills quoted in public projects show it:
 * - a header row of column names, one row per trade, a summary header (`总交易单数,...`) and one summary row;
 * - every value of a trade or summary row starts with a backtick (`` `2019-07-25 08:35:41``), so a value may
 *   hold a plain comma: rows are split on `` ,` ``;
 * - lines end with CRLF; the text may begin with a UTF-8 byte-order mark;
 * - amounts are yuan (`6.00`), the fee column has five decimals (`-1.56000`), refund rows carry `0.00` in the
 *   order amounts and a negative fee;
 * - the columns differ between bill types and over the years (bill_type=SUCCESS has no refund columns, older
 *   bills say 总金额 and 子商户号), so every column is found by its name, never by its position.
 *
 * Choices made here:
 * - Text columns stay strings exactly as the bill writes them ('' when the column is absent). Trade rows
 *   write `0` in the refund-number columns; that `0` is kept.
 * - An amount column that is absent, or a cell left empty, is null: the bill says nothing about it. The one
 *   essential amount (settlementFen, and orderFen which falls back to it) is never null.
 * - An amount that is not a whole number of fen is an error, also in the fee column: real bills write the fee
 *   rounded to the fen (`0.18000` for 29.90 at 0.60%), and a box must not guess at a fraction of a fen.
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
  /** 交易时间, China time, as the bill writes it: `YYYY-MM-DD HH:mm:ss`. */
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
  /** 代金券金额. */
  couponFen: number | null;
  /** 微信退款单号: `0` on a trade row. */
  refundId: string;
  outRefundNo: string;
  /** 退款金额. */
  refundFen: number | null;
  /** 充值券退款金额. */
  couponRefundFen: number | null;
  refundType: string;
  /** 退款状态 when the row was written: the refund's final state comes from refundquery. */
  refundStatus: string;
  /** 商品名称. */
  body: string;
  /** 商户数据包: the order's attach. */
  attach: string;
  /** 手续费, negative on refund rows. */
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
type AmountField = 'couponFen' | 'refundFen' | 'couponRefundFen' | 'feeFen' | 'requestedRefundFen';

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
const AMOUNT_COLUMNS: ReadonlyArray<[AmountField, readonly string[]]> = [
  ['couponFen', ['代金券金额', '代金券或立减优惠金额', '企业红包金额']],
  ['refundFen', ['退款金额']],
  ['couponRefundFen', ['充值券退款金额', '代金券或立减优惠退款金额', '企业红包退款金额']],
  ['feeFen', ['手续费']],
  ['requestedRefundFen', ['申请退款金额']],
];
const TIME_NAMES = ['交易时间'];
const OUT_TRADE_NO_NAMES = ['商户订单号'];
const STATE_NAMES = ['交易状态'];
const SETTLEMENT_NAMES = ['应结订单金额', '总金额'];
const ORDER_NAMES = ['订单金额'];

type SummaryAmount = 'refundFen' | 'couponRefundFen' | 'feeFen' | 'requestedRefundFen';
const SUMMARY_COUNT_NAMES = ['总交易单数'];
const SUMMARY_SETTLEMENT_NAMES = ['应结订单总金额', '总交易额'];
const SUMMARY_ORDER_NAMES = ['订单总金额'];
const SUMMARY_AMOUNTS: ReadonlyArray<[SummaryAmount, readonly string[]]> = [
  ['refundFen', ['退款总金额', '总退款金额']],
  ['couponRefundFen', ['充值券退款总金额', '总代金券或立减优惠退款金额', '总企业红包退款金额']],
  ['feeFen', ['手续费总金额']],
  ['requestedRefundFen', ['申请退款总金额']],
];

const SUMMARY_MARK = '总交易单数';
const COUNT_TEXT = /^[0-9]{1,15}$/;

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

function optionalAmount(values: string[], at: number, line: number, columns: Columns): number | null {
  if (at < 0) return null;
  const value = values[at]!;
  return value === '' ? null : amount(value, line, columns.names[at]!);
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
  const time = columns.require(TIME_NAMES, 'header', headerLine);
  const outTradeNo = columns.require(OUT_TRADE_NO_NAMES, 'header', headerLine);
  const state = columns.require(STATE_NAMES, 'header', headerLine);
  const settlement = columns.find(SETTLEMENT_NAMES);
  const order = columns.find(ORDER_NAMES);
  if (settlement < 0 && order < 0) {
    throw new BillError(`the header has no amount column (${[...SETTLEMENT_NAMES, ...ORDER_NAMES].join(', ')})`, headerLine);
  }
  const texts = TEXT_COLUMNS.map(([field, names]) => [field, columns.find(names)] as const);
  const amounts = AMOUNT_COLUMNS.map(([field, names]) => [field, columns.find(names)] as const);
  const extras = columns.unclaimed();
  return (values, line) => {
    const settlementFen = settlement >= 0 ? amount(required(values, settlement, line, columns), line, columns.names[settlement]!) : -1;
    const orderFen = order >= 0 ? amount(required(values, order, line, columns), line, columns.names[order]!) : settlementFen;
    const row = {
      line,
      time: required(values, time, line, columns),
      outTradeNo: required(values, outTradeNo, line, columns),
      tradeState: required(values, state, line, columns),
      settlementFen: settlement >= 0 ? settlementFen : orderFen,
      orderFen,
      extra: {} as Record<string, string>,
    } as BillRow;
    for (const [field, at] of texts) row[field] = at < 0 ? '' : values[at]!;
    for (const [field, at] of amounts) row[field] = optionalAmount(values, at, line, columns);
    for (const [at, name] of extras) row.extra[name] = values[at]!;
    return row;
  };
}

function readSummary(names: string[], values: string[], line: number, headerLine: number): BillSummary {
  const columns = new Columns(names, headerLine);
  const count = columns.require(SUMMARY_COUNT_NAMES, 'summary header', headerLine);
  const settlement = columns.find(SUMMARY_SETTLEMENT_NAMES);
  const order = columns.find(SUMMARY_ORDER_NAMES);
  if (settlement < 0 && order < 0) throw new BillError('the summary header has no total amount column', headerLine);
  const countText = values[count]!;
  if (!COUNT_TEXT.test(countText)) throw new BillError(`not a count: ${quote(countText)}`, line, names[count]!);
  const settlementFen = settlement >= 0 ? amount(required(values, settlement, line, columns), line, names[settlement]!) : -1;
  const orderFen = order >= 0 ? amount(required(values, order, line, columns), line, names[order]!) : settlementFen;
  const summary: BillSummary = {
    count: Number(countText),
    settlementFen: settlement >= 0 ? settlementFen : orderFen,
    refundFen: null,
    couponRefundFen: null,
    feeFen: null,
    orderFen,
    requestedRefundFen: null,
    extra: {},
  };
  for (const [field, names_] of SUMMARY_AMOUNTS) summary[field] = optionalAmount(values, columns.find(names_), line, columns);
  for (const [at, name] of columns.unclaimed()) summary.extra[name] = values[at]!;
  return summary;
}

/**
 * Reads a bill's text (as downloadbill answers it, already gunzipped) into its rows and summary. Throws
 * BillError for anything that is not such a bill; never anything else.
 */
/**
 * `each`: called with every trade row as it is read, and the rows are then not kept in the result (`rows` is
 * empty): a bill of a busy merchant is tens of thousands of rows of 27 fields, and a caller that needs a few
 * fields of each keeps only those.
 */
export function parseBill(text: string, each?: (row: BillRow) => void): Bill {
  if (typeof text !== 'string') throw new BillError('the bill is not text');
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  if (/^\s*<(\?xml|xml)/.test(body)) throw new BillError('not a bill: an XML answer (a downloadbill failure?)');
  // Lines are cut from the text one at a time rather than split into an array of all of them at once.
  let n = 0;
  let cursor = 0;
  const next = (): string | null => {
    while (cursor < body.length) {
      let end = body.indexOf('\n', cursor);
      if (end === -1) end = body.length;
      let line = body.slice(cursor, end);
      cursor = end + 1;
      n++;
      if (line.charCodeAt(line.length - 1) === 13) line = line.slice(0, -1);
      if (line.trim() !== '') return line;
    }
    return null;
  };

  const headerText = next();
  if (headerText === null) throw new BillError('the bill is empty');
  const headerLine = n;
  const header = headerNames(headerText);
  if (isSummaryHeader(headerText)) throw new BillError('the bill starts with its summary: no header row', headerLine);
  const columns = new Columns(header, headerLine);
  const read = rowReader(columns, headerLine);
  const width = header.length;
  const rows: BillRow[] = [];
  let summary: BillSummary | null = null;

  for (let line = next(); line !== null; line = next()) {
    const at = n;
    if (isSummaryHeader(line)) {
      const names = headerNames(line);
      const summaryHeaderLine = at;
      const valuesText = next();
      if (valuesText === null) throw new BillError('the summary header is not followed by a summary row', summaryHeaderLine);
      const values = splitRow(valuesText);
      if (values.length !== names.length) {
        throw new BillError(`the summary row has ${values.length} values, its header ${names.length} columns`, n);
      }
      summary = readSummary(names, values, n, summaryHeaderLine);
      const after = next();
      if (after !== null) throw new BillError('text after the summary row', n);
      break;
    }
    const values = splitRow(line);
    if (values.length !== width) throw new BillError(`the row has ${values.length} values, the header ${width} columns`, at);
    if (each) each(read(values, at));
    else rows.push(read(values, at));
  }
  return { header, rows, summary };
}
