/**
 * Bills of our own in every layout WeChat Pay writes (after-the-sale.md §3; the facts of issue 16), written
 * here independently of the parser: today's ALL (27 columns, 7-field summary), SUCCESS (20 columns; a summary
 * of 4, 5 or 7 fields), REFUND (29 columns) and the legacy ALL (24 columns, 5-field summary). Every value of a
 * row and of the summary starts with a backtick; a BOM, CRLF or LF, a last line with or without its end,
 * full-width colons in times and the loose summary numbers (`45.0`, `0.0`, `0.47`, `-0.02000`) are options.
 */

export interface FixtureRow {
  /** China-time `YYYY-MM-DD HH:mm:ss` of the trade (of the payment, for a REFUND bill's 交易时间). */
  time: string;
  outTradeNo: string;
  state: 'SUCCESS' | 'REFUND' | 'REVOKED';
  /** The order's amount, fen (a refund row writes 0.00 in the order amounts, as real bills do). */
  amountFen: number;
  deviceInfo: string;
  attach: string;
  transactionId?: string;
  outRefundNo?: string;
  refundId?: string;
  refundFen?: number;
}

export type Layout = 'ALL' | 'SUCCESS' | 'REFUND' | 'LEGACY';

export interface FixtureOptions {
  bom?: boolean;
  eol?: '\r\n' | '\n';
  /** Whether the last line ends with the line end (default true). */
  finalEol?: boolean;
  /** Times written `16：33：45`. */
  fullWidthColons?: boolean;
  /** The summary's numbers written loosely: a count `3.0`, amounts `0.0`, `12.3`, `0.47`. */
  loose?: boolean;
  /** SUCCESS only: a summary of 4, 5 or 7 fields (default 7). */
  successSummary?: 4 | 5 | 7;
}

const ALL = [
  '交易时间', '公众账号ID', '商户号', '特约商户号', '设备号', '微信订单号', '商户订单号', '用户标识', '交易类型', '交易状态',
  '付款银行', '货币种类', '应结订单金额', '代金券金额', '微信退款单号', '商户退款单号', '退款金额', '充值券退款金额', '退款类型',
  '退款状态', '商品名称', '商户数据包', '手续费', '费率', '订单金额', '申请退款金额', '费率备注',
];
const REFUND_ONLY = ['微信退款单号', '商户退款单号', '退款金额', '充值券退款金额', '退款类型', '退款状态', '申请退款金额'];
const SUCCESS = ALL.filter((name) => !REFUND_ONLY.includes(name));
const REFUND = [...ALL.slice(0, 14), '退款申请时间', '退款成功时间', ...ALL.slice(14)];
const LEGACY = [
  '交易时间', '公众账号ID', '商户号', '子商户号', '设备号', '微信订单号', '商户订单号', '用户标识', '交易类型', '交易状态', '付款银行',
  '货币种类', '总金额', '代金券或立减优惠金额', '微信退款单号', '商户退款单号', '退款金额', '代金券或立减优惠退款金额', '退款类型',
  '退款状态', '商品名称', '商户数据包', '手续费', '费率',
];
export const LAYOUT_COLUMNS: Readonly<Record<Layout, readonly string[]>> = { ALL, SUCCESS, REFUND, LEGACY };

const SUMMARY_7 = ['总交易单数', '应结订单总金额', '退款总金额', '充值券退款总金额', '手续费总金额', '订单总金额', '申请退款总金额'];
const SUMMARY_4 = ['总交易单数', '应结订单总金额', '手续费总金额', '订单总金额'];
const SUMMARY_LEGACY = ['总交易单数', '总交易额', '总退款金额', '总代金券或立减优惠退款金额', '手续费总金额'];

/** fen -> yuan with two decimals. */
export function yuan2(fen: number): string {
  const abs = Math.abs(fen);
  return `${fen < 0 ? '-' : ''}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, '0')}`;
}

/** fen -> yuan as loosely as the summary writes it: 0 -> 0.0, 1230 -> 12.3, 47 -> 0.47. */
export function yuanLoose(fen: number): string {
  const text = yuan2(fen);
  return text.endsWith('0') ? text.slice(0, -1) : text;
}

/** 1e-5 yuan -> five decimals (`-0.02000`, `0.05940`). */
function yuan5(units: number): string {
  const abs = Math.abs(units);
  return `${units < 0 ? '-' : ''}${Math.floor(abs / 100_000)}.${String(abs % 100_000).padStart(5, '0')}`;
}

/** The fee at 0.60% in 1e-5 yuan: exact, often a fraction of a fen (9.90 -> 0.05940). */
const feeUnits = (fen: number): number => fen * 6;

export function billText(layout: Layout, rows: readonly FixtureRow[], opts: FixtureOptions = {}): string {
  const columns = LAYOUT_COLUMNS[layout];
  const eol = opts.eol ?? '\r\n';
  const lines: string[] = [columns.join(',')];
  const kept = rows.filter((r) => (layout === 'SUCCESS' ? r.state === 'SUCCESS' : layout === 'REFUND' ? r.state === 'REFUND' : true));
  const sum = { settlement: 0, refund: 0, fee: 0, order: 0 };
  const time = (text: string): string => (opts.fullWidthColons ? text.replace(/:/g, '：') : text);
  for (const r of kept) {
    const refund = r.state === 'REFUND';
    const refundFen = refund ? (r.refundFen ?? 0) : 0;
    const settlement = refund ? 0 : r.amountFen;
    const fee = r.state === 'REVOKED' ? 0 : refund ? -feeUnits(refundFen) : feeUnits(r.amountFen);
    const cells: Record<string, string> = {
      交易时间: time(r.time),
      公众账号ID: 'wx2421b1c4370ec43b',
      商户号: '1900000109',
      特约商户号: '0',
      子商户号: '0',
      设备号: r.deviceInfo,
      微信订单号: r.transactionId ?? `4200000${r.outTradeNo.replace(/[^0-9]/g, '').padStart(21, '0').slice(-21)}`,
      商户订单号: r.outTradeNo,
      用户标识: 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o',
      交易类型: 'MICROPAY',
      交易状态: r.state,
      付款银行: 'OTHERS',
      货币种类: 'CNY',
      应结订单金额: yuan2(settlement),
      总金额: yuan2(settlement),
      代金券金额: '0.00',
      代金券或立减优惠金额: '0.00',
      退款申请时间: time(r.time),
      退款成功时间: refund ? time(r.time) : '',
      微信退款单号: refund ? (r.refundId ?? '50300000000000000000000000001') : '0',
      商户退款单号: refund ? (r.outRefundNo ?? '') : '0',
      退款金额: yuan2(refundFen),
      充值券退款金额: '0.00',
      代金券或立减优惠退款金额: '0.00',
      退款类型: refund ? 'ORIGINAL' : '',
      退款状态: refund ? 'SUCCESS' : '',
      商品名称: '扫码付款',
      商户数据包: r.attach,
      手续费: yuan5(fee),
      费率: '0.60%',
      订单金额: yuan2(settlement),
      申请退款金额: yuan2(refundFen),
      费率备注: '',
    };
    lines.push(columns.map((name) => '`' + (cells[name] ?? '')).join(','));
    sum.settlement += settlement;
    sum.refund += refundFen;
    sum.fee += fee;
    sum.order += settlement;
  }
  const money = opts.loose ? yuanLoose : yuan2;
  const count = opts.loose ? `${kept.length}.0` : String(kept.length);
  // The fee total rounded to the fen and written with five decimals, as real ones are.
  const feeTotal = yuan5(Math.round(sum.fee / 1000) * 1000);
  const fields: Record<string, string> = {
    总交易单数: count,
    应结订单总金额: money(sum.settlement),
    总交易额: money(sum.settlement),
    退款总金额: money(sum.refund),
    总退款金额: money(sum.refund),
    充值券退款总金额: money(0),
    总代金券或立减优惠退款金额: money(0),
    手续费总金额: feeTotal,
    订单总金额: money(sum.order),
    申请退款总金额: money(sum.refund),
  };
  const summary =
    layout === 'LEGACY'
      ? SUMMARY_LEGACY
      : layout === 'SUCCESS' && opts.successSummary === 4
        ? SUMMARY_4
        : layout === 'SUCCESS' && opts.successSummary === 5
          ? SUMMARY_LEGACY
          : SUMMARY_7;
  lines.push(summary.join(','), summary.map((name) => '`' + fields[name]!).join(','));
  return (opts.bom ? '\ufeff' : '') + lines.join(eol) + (opts.finalEol === false ? '' : eol);
}

/** downloadbill's failure answers as WeChat Pay writes them: unsigned XML with return_code=FAIL. */
export const FAILURE_XML = {
  noBill: '<xml><return_code><![CDATA[FAIL]]></return_code>\n<return_msg><![CDATA[No Bill Exist]]></return_msg>\n<error_code><![CDATA[20002]]></error_code>\n</xml>',
  invalidDate:
    '<xml><return_code><![CDATA[FAIL]]></return_code>\n<return_msg><![CDATA[invalid bill_date]]></return_msg>\n<error_code><![CDATA[20001]]></error_code>\n</xml>',
  creating: '<xml><return_code><![CDATA[FAIL]]></return_code>\n<return_msg><![CDATA[Bill Creating]]></return_msg>\n</xml>',
} as const;

/** The bill cut after its first `keep` lines (a download cut short at a line end), and in the middle of a line. */
export function truncated(text: string, keepLines: number): { atLineEnd: string; midLine: string } {
  const lines = text.split(/(?<=\n)/);
  const atLineEnd = lines.slice(0, keepLines).join('');
  const next = lines[keepLines] ?? '';
  return { atLineEnd, midLine: atLineEnd + next.slice(0, Math.floor(next.length / 2)) };
}
