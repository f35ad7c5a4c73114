import { createHash, randomBytes, randomInt } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { gzipSync } from 'node:zlib';
import { systemClock, type Clock } from '../clock.js';
import { maskCode, type Logger } from '../log.js';
import { formatYuan, parseYuan } from '../money.js';
import { SIGN_TYPES, sign, verify, type SignType } from '../wechatpay/sign.js';
import { decodeXml, encodeXml } from '../wechatpay/xml.js';
import { createTestPki, type TestPki } from './ca.js';
import {
  checkRefundScenario,
  checkScenario,
  type Fault,
  type GatewayCall,
  type RefundCall,
  type RefundScenario,
  type Scenario,
  type SimCall,
} from './scenarios.js';

export {
  checkRefundScenario,
  checkScenario,
  paymentCode,
  REFUND_SCENARIOS,
  SCENARIOS,
  type BillCall,
  type Fault,
  type FaultKind,
  type GatewayCall,
  type Outcome,
  type RefundCall,
  type RefundOutcome,
  type RefundRetryCode,
  type RefundScenario,
  type Scenario,
  type SimCall,
} from './scenarios.js';

/**
 * A WeChat Pay V2 gateway stand-in over real HTTPS (micropay, orderquery, reverse, refund, refundquery and
 * downloadbill, the daily bill built from the ledger), for
 * the tests and `scanbox demo`. It validates like the real one (signature over every field, merchant ids,
 * field formats, mTLS on /secapi) because the box is tested against it, and it keeps a ledger of what the
 * payer was really charged and refunded so tests can check money, not just answers.
 */

export type TradeState = 'USERPAYING' | 'SUCCESS' | 'PAYERROR' | 'REVOKED' | 'CLOSED' | 'FAILED';

export interface LedgerEntry {
  outTradeNo: string;
  attach: string | null;
  totalFee: number;
  codeMasked: string;
  /**
   * FAILED = refused at micropay (NOTENOUGH...), nothing charged. A refunded order stays SUCCESS here
   * (orderquery answers trade_state REFUND for it, as WeChat Pay does).
   */
  state: TradeState;
  /** Money taken from the payer and not given back by a reverse (refunds are counted in refundedFen instead). */
  charged: boolean;
  everCharged: boolean;
  /** A reverse succeeded (refund if it was charged, close if not). */
  reversed: boolean;
  /**
   * Money returned: by reverse of a charged order, or by the refunds of it that WeChat Pay accepted and has
   * not closed (PROCESSING, SUCCESS, CHANGE; not REFUNDCLOSE). An order with refunds cannot be reversed and a
   * reversed one cannot be refunded, so the two never add up; this never exceeds totalFee.
   */
  refundedFen: number;
  /** 28 digits, assigned when charged. */
  transactionId: string | null;
  /** Requests that passed the signature and field checks for this out_trade_no, faulted ones included. */
  micropayCount: number;
  queryCount: number;
  reverseCount: number;
  createdAt: number;
}

export type RefundStatus = 'PROCESSING' | 'SUCCESS' | 'REFUNDCLOSE' | 'CHANGE';

/** One refund WeChat Pay accepted (recorded), beside the ledger of charges. */
export interface RefundEntry {
  /** The merchant's refund number: one number refunds at most once. */
  outRefundNo: string;
  /** 29 digits, beyond 2^53: a string. */
  refundId: string;
  outTradeNo: string;
  transactionId: string;
  refundFee: number;
  /** The order's amount. */
  totalFee: number;
  /** What refundquery answers now (moves with the simulator clock, like a USERPAYING order). */
  status: RefundStatus;
  refundDesc: string | null;
  /** Simulator clock when it was accepted. */
  requestedAt: number;
  /** When it became SUCCESS, else null. */
  successAt: number | null;
  /** Refund requests with this out_refund_no that passed the signature and field checks, refused and faulted ones included. */
  requestCount: number;
  /** Refund queries whose answer listed this refund. */
  queryCount: number;
}

export interface RequestRecord {
  call: GatewayCall | 'unknown';
  outTradeNo: string | null;
  /** HTTP status sent; 0 when no answer was sent (dropped, hung, or still pending). */
  status: number;
  /** Simulator clock at arrival. */
  at: number;
  tls: { authorized: boolean };
}

export interface GatewaySimulatorOptions {
  mchId: string;
  appId: string;
  apiKey: string;
  subMchId?: string;
  subAppId?: string;
  /** For confirmAfterMs/cancelAfterMs, time_end and createdAt; default systemClock. */
  clock?: Clock;
  /** Default 0 (ephemeral); the host is always 127.0.0.1. */
  port?: number;
  /** Default createTestPki(). */
  pki?: TestPki;
  /** Default { outcome: 'paid' }. */
  defaultScenario?: Scenario;
  /** For orders whose payment code's scenario has no `refund` and no setRefundScenario; default { outcome: 'SUCCESS' }. */
  defaultRefundScenario?: RefundScenario;
  /**
   * When a day's bill can be downloaded, in ms from the end of that China-time day: default 9 h (09:00 the next
   * day, WeChat Pay's rule); before it downloadbill answers `Bill Creating`. From -86_400_000 (the start of the
   * day itself) up, so that a test can ask for today's bill, which then holds what happened until the request.
   */
  billReadyAfterMs?: number;
  /** Whether a bill begins with a UTF-8 byte-order mark, as real ones may; default true. */
  billBom?: boolean;
  /**
   * How long an idle keep-alive connection is kept (and announced as `Keep-Alive: timeout=`): default 75 s, as
   * nginx's default, so that no test races a server closing a socket the client is about to reuse. WeChat
   * Pay's own servers close after 8 s: the bench measures with that.
   */
  idleTimeoutMs?: number;
  log?: Logger;
}

/**
 * One trade row of a simulated bill before it is written: amounts in integer fen, `at` the simulator-clock
 * ms of 交易时间 (its China-time day is the bill it is in). What plantBillRow adds and amendBillRow changes.
 */
export interface TradeReportRecord {
  interfaceUrl: string;
  executeMs: number;
  returnCode: string;
  resultCode: string;
  errCode: string | null;
  outTradeNo: string | null;
  deviceInfo: string | null;
  time: string;
  /** Simulator clock ms when it came. */
  at: number;
}

export interface SimBillRow {
  at: number;
  outTradeNo: string;
  /** SUCCESS, REFUND, REVOKED, or anything a test plants. */
  tradeState: string;
  transactionId: string;
  deviceInfo: string;
  openId: string;
  bankType: string;
  settlementFen: number;
  couponFen: number;
  refundId: string;
  outRefundNo: string;
  refundFen: number;
  couponRefundFen: number;
  refundType: string;
  refundStatus: string;
  body: string;
  attach: string;
  feeFen: number;
  orderFen: number;
  requestedRefundFen: number;
  /** Cells written exactly as given, by column name (`{ 应结订单金额: '1,00' }`), over everything above. */
  raw?: Record<string, string>;
}

const PATHS: Record<string, GatewayCall> = {
  '/pay/micropay': 'micropay',
  '/pay/orderquery': 'orderquery',
  '/secapi/pay/reverse': 'reverse',
  '/secapi/pay/refund': 'refund',
  '/pay/refundquery': 'refundquery',
  '/pay/downloadbill': 'downloadbill',
  '/payitil/report': 'report',
};

/** Behind nginx's client-certificate check. */
const SECAPI: ReadonlySet<GatewayCall> = new Set<GatewayCall>(['reverse', 'refund']);

/** WeChat Pay allows digits, letters and `_-|*@` in out_trade_no (PHP demo comment). */
const OUT_TRADE_NO = /^[A-Za-z0-9_\-|*@]{1,32}$/;
/** out_refund_no: String(64), the same characters as out_trade_no (refund doc, 9_4). */
const OUT_REFUND_NO = /^[A-Za-z0-9_\-|*@]{1,64}$/;
const FEE = /^[1-9]\d{0,15}$/;
const WECHAT_CODE = /^1[0-5]\d{16}$/;
const MAX_BODY = 64 * 1024;
/** Reverse is allowed within 7 days (wechatpay-v2.md §5). */
const REVERSE_WINDOW_MS = 7 * 24 * 3600 * 1000;
/** "交易时间超过一年的订单无法提交退款" (after-the-sale.md §1). */
const REFUND_WINDOW_MS = 365 * 24 * 3600 * 1000;
/** "每个支付订单的部分退款次数不能超过50次". */
const MAX_REFUNDS_PER_ORDER = 50;
/** refundquery lists this many refunds per answer; `offset` pages past them (after-the-sale.md §2). */
const REFUND_PAGE = 10;
const REFUND_ACCOUNTS = ['REFUND_SOURCE_UNSETTLED_FUNDS', 'REFUND_SOURCE_RECHARGE_FUNDS'];

/** "微信在次日9点启动生成前一天的对账单" (after-the-sale.md §3). */
const BILL_READY_AFTER_MS = 9 * 3600 * 1000;
const DAY_MS = 24 * 3600 * 1000;
const CHINA_OFFSET_MS = 8 * 3600 * 1000;
/** The simulator's fee: 0.60% of each amount, rounded half up to the fen. */
const FEE_RATE_BP = 60;
const FEE_RATE_TEXT = '0.60%';
const BILL_TYPES = ['ALL', 'SUCCESS', 'REFUND', 'RECHARGE_REFUND'] as const;
type BillType = (typeof BILL_TYPES)[number];

/** The 27 columns of a bill_type=ALL bill. */
const ALL_COLUMNS = [
  '交易时间', '公众账号ID', '商户号', '特约商户号', '设备号', '微信订单号', '商户订单号', '用户标识', '交易类型', '交易状态',
  '付款银行', '货币种类', '应结订单金额', '代金券金额', '微信退款单号', '商户退款单号', '退款金额', '充值券退款金额', '退款类型',
  '退款状态', '商品名称', '商户数据包', '手续费', '费率', '订单金额', '申请退款金额', '费率备注',
];
/** bill_type=SUCCESS: no refund columns. */
const SUCCESS_COLUMNS = ALL_COLUMNS.filter(
  (name) => !['微信退款单号', '商户退款单号', '退款金额', '充值券退款金额', '退款类型', '退款状态', '申请退款金额'].includes(name),
);
/** bill_type=REFUND: the refund's times after 代金券金额, and 交易时间 is the order's payment time. */
const REFUND_COLUMNS = [...ALL_COLUMNS.slice(0, 14), '退款申请时间', '退款成功时间', ...ALL_COLUMNS.slice(14)];
const SUMMARY_COLUMNS = ['总交易单数', '应结订单总金额', '退款总金额', '充值券退款总金额', '手续费总金额', '订单总金额', '申请退款总金额'];

/** What a row of the bill is made from: a SimBillRow and, for a refund row, the times of the REFUND bill. */
interface BillLine extends SimBillRow {
  paidAt: number;
  refundSuccessAt: number | null;
}

/** The fee of an amount at FEE_RATE_BP, rounded half up, in integer arithmetic. */
function feeOf(fen: number): number {
  const n = Math.abs(fen) * FEE_RATE_BP + 5000;
  const fee = (n - (n % 10_000)) / 10_000;
  return fen < 0 ? -fee : fee;
}

/** The China-time day yyyyMMdd as [start, end) in ms, or null when it is not a calendar date. */
function chinaDay(billDate: string): { start: number; end: number } | null {
  if (!/^\d{8}$/.test(billDate)) return null;
  const y = Number(billDate.slice(0, 4));
  const m = Number(billDate.slice(4, 6));
  const d = Number(billDate.slice(6, 8));
  const utc = Date.UTC(y, m - 1, d);
  const date = new Date(utc);
  if (y < 1970 || date.getUTCFullYear() !== y || date.getUTCMonth() !== m - 1 || date.getUTCDate() !== d) return null;
  return { start: utc - CHINA_OFFSET_MS, end: utc - CHINA_OFFSET_MS + DAY_MS };
}

/** yyyyMMdd three calendar months before the China-time day of `now` (the 31st becomes the month's last day). */
function threeMonthsBefore(now: number): string {
  const today = new Date(now + CHINA_OFFSET_MS);
  const first = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth() - 3, 1));
  const last = new Date(Date.UTC(first.getUTCFullYear(), first.getUTCMonth() + 1, 0)).getUTCDate();
  const day = Math.min(today.getUTCDate(), last);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(first.getUTCFullYear(), 4)}${p(first.getUTCMonth() + 1)}${p(day)}`;
}

const ERR_DES: Record<string, string> = {
  SYSTEMERROR: '系统超时',
  BANKERROR: '银行系统异常',
  USERPAYING: '需要用户输入支付密码',
  NOTENOUGH: '余额不足',
  AUTHCODEEXPIRE: '二维码已过期，请用户在微信上刷新后再试',
  AUTH_CODE_INVALID: '请扫描微信支付授权码(以10/11/12/13/14/15为前缀的18位数字)',
  AUTH_CODE_ERROR: '每个二维码仅限使用一次，请刷新再试',
  NOTSUPORTCARD: '不支持卡类型',
  TRADE_ERROR: '暂无可用的支付方式,请绑定其它银行卡完成支付',
  ORDERCLOSED: '订单已关闭',
  ORDERREVERSED: '订单已撤销',
  ORDERNOTEXIST: '此交易订单号不存在',
  INVALID_REQUEST: '重入请求数据和已存在的业务单据数据不一致',
  MCHID_NOT_EXIST: '商户号不存在',
  APPID_MCHID_NOT_MATCH: 'appid和mch_id不匹配',
  REVERSE_EXPIRE: '订单已超过撤销期限',
  PARAM_ERROR: '参数错误',
  LACK_PARAMS: '缺少参数',
  INVALID_TRANSACTIONID: '无效transaction_id',
  REFUNDNOTEXIST: 'not exist',
  TRADE_OVERDUE: '订单已经超过退款期限',
  USER_ACCOUNT_ABNORMAL: '退款请求失败，用户帐号注销',
  FREQUENCY_LIMITED: '频率限制，请降低频率后重试',
  INVALID_REQ_TOO_MUCH: '无效请求过多，请稍后再试',
  BIZERR_NEED_RETRY: '退款业务流程错误，需要商户触发重试来解决',
  REFUND_FEE_MISMATCH: '订单金额或退款金额与之前请求不一致，请核实后再试',
};

/** NOTENOUGH means the payer's balance at micropay and the merchant's available balance at refund. */
const REFUND_NOTENOUGH_DES = '基本账户余额不足，请充值后重新发起';

const TRADE_STATE_DESC: Record<string, string> = {
  REFUND: '订单发生过退款',
  SUCCESS: '支付成功',
  USERPAYING: '需要用户输入支付密码',
  PAYERROR: '支付失败，请撤销订单',
  REVOKED: '已撤销',
  CLOSED: '已关闭',
};

function nginxPage(status: string, detail?: string): string {
  const title = detail ?? status;
  return (
    `<html>\r\n<head><title>${title}</title></head>\r\n<body>\r\n<center><h1>${status}</h1></center>\r\n` +
    (detail ? `<center>${detail.replace(/^\d+ /, '')}</center>\r\n` : '') +
    '<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n'
  );
}

const PAGE_404 = nginxPage('404 Not Found');
const PAGE_500 = nginxPage('500 Internal Server Error');
const PAGE_NO_CERT = nginxPage('400 Bad Request', '400 No required SSL certificate was sent');
const PAGE_BAD_CERT = nginxPage('400 Bad Request', '400 The SSL certificate error');
const GARBAGE = '{"return_code":"SUCCESS","result_code":"SUCCESS"}\u0000\u0001 upstream answered garbage';
const DOCTYPE = '<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE xml [<!ENTITY sim SYSTEM "file:///etc/hostname">]>\n';

type Fields = Record<string, string>;

interface Track {
  scenario: Readonly<Scenario>;
  faults: Record<SimCall, Array<{ fault: Fault; left: number }>>;
  counts: Record<SimCall, number>;
}

interface Order {
  entry: Omit<LedgerEntry, 'micropayCount' | 'queryCount' | 'reverseCount'>;
  track: Track;
  authCode: string;
  /** err_code of a micropay the wallet refused. */
  failCode: string | null;
  recallLeft: number;
  chargedAt: number | null;
  openid: string;
  /** Accepted refunds, oldest first. */
  refunds: Refund[];
  refundTrack: RefundTrack | null;
  /** Simulator clock of the last accepted refund, for RefundScenario.minIntervalMs. */
  lastRefundAt: number | null;
  /** micropay's device_info and body, for the bill's 设备号 and 商品名称. */
  deviceInfo: string | null;
  body: string;
  /** When a reverse made it REVOKED. */
  reversedAt: number | null;
}

/** The refund side of one order under one refund scenario; replaced when the scenario for the order changes. */
interface RefundTrack {
  scenario: Readonly<RefundScenario>;
  faults: Record<RefundCall, Array<{ fault: Fault; left: number }>>;
  refuseLeft: number;
}

interface Refund {
  entry: Omit<RefundEntry, 'requestCount'>;
  order: Order;
  scenario: Readonly<RefundScenario>;
  refundAccount: string;
}

/** yyyyMMddHHmmss in China time (UTC+8), as WeChat Pay writes time_end. */
function chinaTime(ms: number): string {
  const d = new Date(ms + 8 * 3600 * 1000);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getUTCFullYear(), 4)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`;
}

/** yyyy-MM-dd HH:mm:ss in China time, as refundquery writes refund_success_time_$n. */
function chinaDateTime(ms: number): string {
  const s = chinaTime(ms);
  return `${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6, 8)} ${s.slice(8, 10)}:${s.slice(10, 12)}:${s.slice(12, 14)}`;
}

function digits(n: number): string {
  let out = '';
  while (out.length < n) out += String(randomInt(0, 1_000_000_000)).padStart(9, '0');
  return out.slice(0, n);
}

function nonce(): string {
  return randomBytes(16).toString('hex');
}

function failure(code: string, des?: string): Fields {
  return { result_code: 'FAIL', err_code: code, err_code_des: des ?? ERR_DES[code] ?? code };
}

/** When a refund leaves PROCESSING under its scenario, or null when it never does (settleRefund's rule, as a function of time). */
function settlesAt(refund: Refund): number | null {
  const { outcome, settleAfterMs } = refund.scenario;
  const after = settleAfterMs ?? (outcome === 'PROCESSING' ? undefined : 0);
  return after === undefined ? null : refund.entry.requestedAt + after;
}

function successAtOf(refund: Refund): number | null {
  const at = settlesAt(refund);
  const { outcome } = refund.scenario;
  return at !== null && outcome !== 'REFUNDCLOSE' && outcome !== 'CHANGE' ? at : null;
}

/** A refund's refund_status at `at`. */
function refundStatusAt(refund: Refund, at: number): RefundStatus {
  const settles = settlesAt(refund);
  if (settles === null || at < settles) return 'PROCESSING';
  const { outcome } = refund.scenario;
  return outcome === 'REFUNDCLOSE' || outcome === 'CHANGE' ? outcome : 'SUCCESS';
}

export class GatewaySimulator {
  readonly origin: string;
  readonly pki: TestPki;
  private readonly options: GatewaySimulatorOptions;
  private readonly clock: Clock;
  private readonly defaultScenario: Readonly<Scenario>;
  private readonly defaultRefundScenario: Readonly<RefundScenario>;
  private readonly server: https.Server;
  private readonly orders = new Map<string, Order>();
  private readonly byTransactionId = new Map<string, Order>();
  private readonly ordersByCode = new Map<string, Order[]>();
  private readonly tracks = new Map<string, Track>();
  private readonly scenarios = new Map<string, Readonly<Scenario>>();
  /** By out_trade_no, set by setRefundScenario. */
  private readonly refundScenarios = new Map<string, Readonly<RefundScenario>>();
  /** Every accepted refund, in order of acceptance. */
  private readonly refundList: Refund[] = [];
  private readonly refundsByNo = new Map<string, Refund>();
  private readonly refundsById = new Map<string, Refund>();
  /** Checked refund requests per out_refund_no, also for numbers never accepted. */
  private readonly refundRequests = new Map<string, number>();
  /** Test hooks on the bill (plantBillRow, dropFromBill, amendBillRow). */
  private readonly plantedRows: SimBillRow[] = [];
  private readonly droppedFromBill = new Set<string>();
  private readonly billAmendments = new Map<string, Partial<SimBillRow>>();
  private readonly servedBills = new Map<string, string>();
  private readonly log: RequestRecord[] = [];
  private readonly listeners = new Set<(call: GatewayCall, outTradeNo: string | null) => void>();
  private readonly sockets = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private accepted = 0;
  private closing: Promise<void> | null = null;

  static async start(options: GatewaySimulatorOptions): Promise<GatewaySimulator> {
    for (const name of ['mchId', 'appId', 'apiKey'] as const) {
      if (typeof options[name] !== 'string' || options[name] === '') throw new TypeError(`GatewaySimulator: ${name} is required`);
    }
    // Before listening: a TypeError from the constructor would leave the server open.
    if (options.defaultScenario !== undefined) checkScenario(options.defaultScenario);
    if (options.defaultRefundScenario !== undefined) checkRefundScenario(options.defaultRefundScenario, 'defaultRefundScenario.');
    const ready = options.billReadyAfterMs;
    if (ready !== undefined && !(typeof ready === 'number' && Number.isFinite(ready) && ready >= -DAY_MS)) {
      throw new TypeError(`GatewaySimulator: billReadyAfterMs must be a number of ms >= ${-DAY_MS}`);
    }
    const pki = options.pki ?? createTestPki({ mchId: options.mchId });
    const server = https.createServer({
      key: pki.server.keyPem,
      cert: pki.server.certPem,
      ca: [pki.ca.certPem],
      requestCert: true,
      rejectUnauthorized: false,
    });
    // nginx keeps idle connections 75 s; a short server timeout would race clients that reuse sockets.
    server.keepAliveTimeout = options.idleTimeoutMs ?? 75_000;
    server.headersTimeout = Math.max(80_000, server.keepAliveTimeout + 5_000);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new GatewaySimulator(server, pki, options);
  }

  private readonly tlsCounts = { resumed: 0 };
  private readonly reportList: TradeReportRecord[] = [];

  private constructor(server: https.Server, pki: TestPki, options: GatewaySimulatorOptions) {
    this.server = server;
    this.pki = pki;
    this.options = options;
    server.on('secureConnection', (socket: TLSSocket) => {
      if (socket.isSessionReused()) this.tlsCounts.resumed += 1;
    });
    this.clock = options.clock ?? systemClock;
    this.defaultScenario = checkScenario(options.defaultScenario ?? { outcome: 'paid' });
    this.defaultRefundScenario = checkRefundScenario(options.defaultRefundScenario ?? { outcome: 'SUCCESS' }, 'defaultRefundScenario.');
    const { port } = server.address() as AddressInfo;
    this.origin = `https://127.0.0.1:${port}`;
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    server.on('secureConnection', (socket: TLSSocket) => {
      this.accepted++;
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    server.on('tlsClientError', () => {});
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.receive(req, res));
  }

  /** TLS connections accepted (handshakes completed). */
  get connections(): number {
    return this.accepted;
  }

  /** What the payer's wallet does with `authCode`; applies to orders created after this call. */
  setScenario(authCode: string, scenario: Scenario): void {
    if (typeof authCode !== 'string' || authCode === '') throw new TypeError('setScenario needs a payment code');
    this.scenarios.set(authCode, checkScenario(scenario));
  }

  ledger(): LedgerEntry[] {
    return [...this.orders.values()].map((order) => this.snapshot(order));
  }

  entry(outTradeNo: string): LedgerEntry | undefined {
    const order = this.orders.get(outTradeNo);
    return order ? this.snapshot(order) : undefined;
  }

  /**
   * What WeChat Pay does with refunds of the order `outTradeNo` (made or still to be made), overriding the
   * `refund` of its payment code's scenario; applies to refunds requested after this call.
   */
  setRefundScenario(outTradeNo: string, scenario: RefundScenario): void {
    if (typeof outTradeNo !== 'string' || outTradeNo === '') throw new TypeError('setRefundScenario needs an out_trade_no');
    this.refundScenarios.set(outTradeNo, checkRefundScenario(scenario));
  }

  /** Every refund WeChat Pay accepted, oldest first; refused requests are not here. */
  refunds(): RefundEntry[] {
    return this.refundList.map((refund) => this.refundSnapshot(refund));
  }

  refundEntry(outRefundNo: string): RefundEntry | undefined {
    const refund = this.refundsByNo.get(outRefundNo);
    return refund ? this.refundSnapshot(refund) : undefined;
  }

  /**
   * Test hooks that make the bill differ from the ledger, for reconciliation tests. They apply to every bill
   * served after the call (each bill_type, plain or gzip), the summary row included, which always adds up the
   * rows as written; clearBillChanges undoes them all.
   *
   * plantBillRow: an extra row in the bill of the China-time day of `row.at` (a sale the box never made, a refund
   * nobody asked for). Unset fields get what a ledger row would have: SUCCESS, this merchant, amounts 0, the fee
   * of the amounts at 0.60%, `0` in the refund numbers of a trade row.
   */
  plantBillRow(row: Partial<SimBillRow> & { at: number; outTradeNo: string }): void {
    if (typeof row !== 'object' || row === null || !Number.isFinite(row.at) || typeof row.outTradeNo !== 'string') {
      throw new TypeError('plantBillRow needs at least { at, outTradeNo }');
    }
    const settlementFen = row.settlementFen ?? 0;
    const refundFen = row.refundFen ?? 0;
    const refund = (row.tradeState ?? 'SUCCESS') === 'REFUND';
    this.plantedRows.push({
      tradeState: 'SUCCESS',
      transactionId: '4200' + digits(24),
      deviceInfo: '',
      openId: 'o' + digits(27),
      bankType: 'OTHERS',
      settlementFen,
      couponFen: 0,
      refundId: refund ? '50' + digits(27) : '0',
      outRefundNo: refund ? `${row.outTradeNo}-R` : '0',
      refundFen,
      couponRefundFen: 0,
      refundType: refund ? 'ORIGINAL' : '',
      refundStatus: refund ? 'SUCCESS' : '',
      body: '',
      attach: '',
      feeFen: feeOf(settlementFen) - feeOf(refundFen),
      orderFen: settlementFen,
      requestedRefundFen: refundFen,
      ...row,
      ...(row.raw ? { raw: { ...row.raw } } : {}),
    });
  }

  /** Leaves the ledger's rows of `outTradeNo` (its sale and its refunds) out of every bill; planted rows stay. */
  dropFromBill(outTradeNo: string): void {
    if (typeof outTradeNo !== 'string' || outTradeNo === '') throw new TypeError('dropFromBill needs an out_trade_no');
    this.droppedFromBill.add(outTradeNo);
  }

  /**
   * Changes the ledger's row of the sale `outTradeNo` (its SUCCESS or REVOKED row), or with `outRefundNo` the row
   * of that refund. Patches add up; `raw` cells are merged; a new `at` can move the row to another day's bill.
   */
  amendBillRow(outTradeNo: string, patch: Partial<SimBillRow>, outRefundNo?: string): void {
    if (typeof outTradeNo !== 'string' || outTradeNo === '' || typeof patch !== 'object' || patch === null) {
      throw new TypeError('amendBillRow needs an out_trade_no and a patch');
    }
    const key = outRefundNo === undefined ? outTradeNo : `${outTradeNo}\u0000${outRefundNo}`;
    const before = this.billAmendments.get(key) ?? {};
    const raw = before.raw || patch.raw ? { ...before.raw, ...patch.raw } : undefined;
    this.billAmendments.set(key, { ...before, ...patch, ...(raw ? { raw } : {}) });
  }

  /**
   * Serves `body` verbatim as the answer to downloadbill for `billDate` (every bill_type; gzipped when the
   * request asks for GZIP and the body is not XML), in place of the bill made from the ledger: a bill in another
   * layout, a copy cut short, a failure XML (`<xml><return_code>FAIL</return_code>...`). The request is still
   * checked (signature, parameters) first. null stops serving it; clearBillChanges stops them all.
   */
  serveBill(billDate: string, body: string | null): void {
    if (!/^\d{8}$/.test(billDate)) throw new TypeError('serveBill needs a bill date yyyyMMdd');
    if (body === null) this.servedBills.delete(billDate);
    else if (typeof body === 'string') this.servedBills.set(billDate, body);
    else throw new TypeError('serveBill needs the body as a string, or null');
  }

  /** Undoes plantBillRow, dropFromBill, amendBillRow and serveBill. */
  clearBillChanges(): void {
    this.plantedRows.length = 0;
    this.droppedFromBill.clear();
    this.billAmendments.clear();
    this.servedBills.clear();
  }

  requests(): RequestRecord[] {
    return this.log.map((r) => ({ ...r, tls: { ...r.tls } }));
  }

  /** Fired once a request body to one of the API paths is in, before any check or action. */
  onRequest(listener: (call: GatewayCall, outTradeNo: string | null) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Closes every idle keep-alive connection now, as a server does when its idle timeout runs out. */
  closeIdleConnections(): void {
    this.server.closeIdleConnections();
  }

  /** TLS connections accepted that resumed a session (a shorter handshake). */
  get resumedConnections(): number {
    return this.tlsCounts.resumed;
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.closing = new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
      for (const socket of this.sockets) socket.destroy();
    });
    return this.closing;
  }

  // ---- HTTP ----

  private receive(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '').split('?')[0] ?? '';
    const call = PATHS[path] ?? 'unknown';
    const socket = req.socket as TLSSocket;
    // A resumed TLS session keeps `authorized` from the first handshake even when that one carried no client
    // certificate: only a certificate actually presented on this connection counts.
    const peer = socket.getPeerCertificate?.();
    const presented = peer !== undefined && peer !== null && Object.keys(peer).length > 0;
    const record: RequestRecord = {
      call,
      outTradeNo: null,
      status: 0,
      at: this.clock.now(),
      tls: { authorized: socket.authorized === true && presented },
    };
    this.log.push(record);
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY) chunks.push(chunk);
    });
    req.on('error', () => {});
    req.on('end', () => {
      if (this.closing) return;
      try {
        this.process(call, req, res, record, size > MAX_BODY ? null : Buffer.concat(chunks));
      } catch (error) {
        this.options.log?.error('simulator failed on a request', { call, error: (error as Error).message });
        this.sendRaw(res, record, 500, PAGE_500, 'text/html');
      }
    });
  }

  private process(call: GatewayCall | 'unknown', req: IncomingMessage, res: ServerResponse, record: RequestRecord, raw: Buffer | null): void {
    if (call === 'unknown') {
      this.sendRaw(res, record, 404, PAGE_404, 'text/html');
      return;
    }
    let text: string | null = null;
    if (raw !== null) {
      try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(raw);
      } catch {
        text = null;
      }
    }
    let fields: Fields | null = null;
    try {
      fields = text === null ? null : decodeXml(text);
    } catch {
      fields = null;
    }
    record.outTradeNo = fields?.out_trade_no || null;
    this.options.log?.debug('simulator request', { call, out_trade_no: record.outTradeNo, tls: record.tls.authorized });
    for (const listener of [...this.listeners]) {
      try {
        listener(call, record.outTradeNo);
      } catch (error) {
        this.options.log?.warning('simulator onRequest listener threw', { error: (error as Error).message });
      }
    }
    if (res.destroyed || this.closing) return;

    // nginx in front of /secapi refuses a missing or foreign client certificate before the API sees anything.
    if (SECAPI.has(call) && !record.tls.authorized) {
      const socket = req.socket as TLSSocket;
      const peer = socket.getPeerCertificate?.();
      const sent = peer !== undefined && peer !== null && Object.keys(peer).length > 0;
      this.sendRaw(res, record, 400, sent ? PAGE_BAD_CERT : PAGE_NO_CERT, 'text/html');
      return;
    }
    if (req.method !== 'POST') return this.returnFail(res, record, 'REQUIRE_POST_METHOD 请使用post方法');
    if (raw === null) return this.returnFail(res, record, '请求数据过长');
    if (text === null) return this.returnFail(res, record, '编码格式错误，请使用UTF-8编码');
    if (fields === null) return this.returnFail(res, record, 'XML格式错误');
    this.api(call, fields, res, record);
  }

  /** Trade reports taken, in order. */
  tradeReports(): TradeReportRecord[] {
    return this.reportList.map((r) => ({ ...r }));
  }

  /** /payitil/report: the fields the official SDKs send, checked; answered SUCCESS, unsigned, as WeChat Pay does. */
  private reportApi(fields: Fields, res: ServerResponse, record: RequestRecord): void {
    const required = ['interface_url', 'execute_time_', 'return_code', 'result_code', 'user_ip', 'time'] as const;
    const missing = required.filter((name) => !fields[name]);
    if (missing.length > 0) return this.returnFail(res, record, `缺少参数 ${missing.join(',')}`);
    if (!/^[0-9]{1,9}$/.test(fields.execute_time_!)) return this.returnFail(res, record, 'execute_time_参数格式错误');
    if (!/^[0-9]{14}$/.test(fields.time!)) return this.returnFail(res, record, 'time参数格式错误');
    if (!/^(SUCCESS|FAIL)$/.test(fields.return_code!) || !/^(SUCCESS|FAIL)$/.test(fields.result_code!)) {
      return this.returnFail(res, record, 'return_code或result_code参数格式错误');
    }
    this.reportList.push({
      interfaceUrl: fields.interface_url!,
      executeMs: Number(fields.execute_time_),
      returnCode: fields.return_code!,
      resultCode: fields.result_code!,
      errCode: fields.err_code ?? null,
      outTradeNo: fields.out_trade_no ?? null,
      deviceInfo: fields.device_info ?? null,
      time: fields.time!,
      at: this.clock.now(),
    });
    this.sendRaw(res, record, 200, encodeXml({ return_code: 'SUCCESS', result_code: 'SUCCESS' }), 'xml');
  }

  private sendRaw(res: ServerResponse, record: RequestRecord, status: number, body: string, type: string): void {
    record.status = status;
    if (res.destroyed || res.headersSent) return;
    res.writeHead(status, {
      'content-type': type === 'text/html' ? 'text/html' : 'text/plain;charset=utf-8',
      'content-length': Buffer.byteLength(body, 'utf8'),
      server: 'nginx',
    });
    res.end(body);
  }

  private returnFail(res: ServerResponse, record: RequestRecord, msg: string): void {
    this.sendRaw(res, record, 200, encodeXml({ return_code: 'FAIL', return_msg: msg }), 'xml');
  }

  private drop(res: ServerResponse, record: RequestRecord): void {
    record.status = 0;
    res.socket?.destroy();
  }

  // ---- API ----

  private api(call: GatewayCall, fields: Fields, res: ServerResponse, record: RequestRecord): void {
    if (call === 'downloadbill') return this.billApi(fields, res, record);
    let signType: SignType = 'MD5';
    const declared = fields.sign_type;
    if (declared !== undefined && declared !== '') {
      if (!SIGN_TYPES.includes(declared as SignType)) return this.returnFail(res, record, 'sign_type参数格式错误');
      signType = declared as SignType;
    }
    if (!verify(fields, this.options.apiKey, signType)) return this.returnFail(res, record, '签名错误');
    if (call === 'report') return this.reportApi(fields, res, record);
    const refuse = (code: string, des?: string): void => this.deliver(res, record, signType, failure(code, des), undefined);

    const refusal = this.checkFields(call, fields);
    if (refusal) return refuse(refusal.code, refusal.des);
    if (call === 'refund' || call === 'refundquery') return this.refundApi(call, fields, res, record, signType);

    // The order (and so the faults) is known only now.
    let track: Track | undefined;
    let order: Order | undefined;
    if (call === 'micropay') {
      const outTradeNo = fields.out_trade_no!;
      track = this.tracks.get(outTradeNo);
      if (!track) {
        track = this.newTrack(this.scenarios.get(fields.auth_code!) ?? this.defaultScenario);
        this.tracks.set(outTradeNo, track);
      }
    } else {
      order = this.find(fields);
      track = order?.track ?? (fields.out_trade_no ? this.tracks.get(fields.out_trade_no) : undefined);
    }
    if (track) track.counts[call]++;
    const fault = track ? this.takeFault(track, call) : undefined;
    if (fault) this.options.log?.debug('simulator fault', { call, fault: fault.kind, out_trade_no: record.outTradeNo });

    switch (fault?.kind) {
      case 'drop_before':
        return this.drop(res, record);
      case 'return_fail':
        return this.returnFail(res, record, fault.msg ?? 'system error');
      case 'http_500':
        return this.sendRaw(res, record, 500, PAGE_500, 'text/html');
      case 'system_error':
        if (call !== 'micropay') return refuse('SYSTEMERROR');
        break;
      default:
        break;
    }

    let answer: Fields;
    if (call === 'micropay') answer = this.micropay(fields, track!);
    else if (call === 'orderquery') answer = this.orderquery(fields, order);
    else answer = this.reverse(order);
    if (fault?.kind === 'system_error') answer = failure('SYSTEMERROR');
    this.deliver(res, record, signType, answer, fault);
  }

  private checkFields(call: GatewayCall, fields: Fields): { code: string; des?: string } | null {
    const has = (name: string): boolean => fields[name] !== undefined && fields[name] !== '';
    const required = ['appid', 'mch_id', 'nonce_str'];
    if (call === 'micropay') required.push('body', 'out_trade_no', 'total_fee', 'spbill_create_ip', 'auth_code');
    if (call === 'refund') required.push('out_refund_no', 'total_fee', 'refund_fee');
    if (this.options.subMchId !== undefined) required.push('sub_mch_id');
    for (const name of required) if (!has(name)) return { code: 'LACK_PARAMS', des: `缺少参数${name}` };
    if (call === 'refundquery') {
      if (!['refund_id', 'out_refund_no', 'transaction_id', 'out_trade_no'].some(has)) {
        return { code: 'LACK_PARAMS', des: '缺少参数refund_id、out_refund_no、transaction_id或out_trade_no' };
      }
    } else if (call !== 'micropay' && !has('out_trade_no') && !has('transaction_id')) {
      return { code: 'LACK_PARAMS', des: '缺少参数out_trade_no或transaction_id' };
    }
    if (fields.mch_id !== this.options.mchId) return { code: 'MCHID_NOT_EXIST' };
    if (fields.appid !== this.options.appId) return { code: 'APPID_MCHID_NOT_MATCH' };
    if (this.options.subMchId === undefined) {
      if (has('sub_mch_id')) return { code: 'MCHID_NOT_EXIST', des: '非服务商不能传sub_mch_id' };
    } else {
      if (fields.sub_mch_id !== this.options.subMchId) return { code: 'MCHID_NOT_EXIST', des: '子商户号不存在' };
      if (has('sub_appid') && fields.sub_appid !== this.options.subAppId) return { code: 'APPID_MCHID_NOT_MATCH', des: 'sub_appid和sub_mch_id不匹配' };
    }
    if (fields.nonce_str!.length > 32) return { code: 'PARAM_ERROR', des: 'nonce_str参数长度有误' };
    if (has('out_trade_no') && !OUT_TRADE_NO.test(fields.out_trade_no!)) return { code: 'PARAM_ERROR', des: 'out_trade_no参数格式错误' };
    if (call === 'refund' || call === 'refundquery') return this.checkRefundFields(call, fields, has);
    if (call !== 'micropay') return null;
    const fee = fields.total_fee!;
    if (!/^[1-9]\d{0,15}$/.test(fee) || !Number.isSafeInteger(Number(fee))) return { code: 'PARAM_ERROR', des: 'total_fee参数格式错误' };
    if ([...fields.body!].length > 128) return { code: 'PARAM_ERROR', des: 'body参数长度有误' };
    if (has('attach') && [...fields.attach!].length > 127) return { code: 'PARAM_ERROR', des: 'attach参数长度有误' };
    if (has('device_info') && fields.device_info!.length > 32) return { code: 'PARAM_ERROR', des: 'device_info参数长度有误' };
    if (fields.spbill_create_ip!.length > 64) return { code: 'PARAM_ERROR', des: 'spbill_create_ip参数长度有误' };
    if (!WECHAT_CODE.test(fields.auth_code!)) return { code: 'AUTH_CODE_INVALID' };
    return null;
  }

  private newTrack(scenario: Readonly<Scenario>): Track {
    const queue = (call: SimCall) => (scenario.faults?.[call] ?? []).map(({ times, ...fault }) => ({ fault: fault as Fault, left: times ?? 1 }));
    return {
      scenario,
      faults: { micropay: queue('micropay'), orderquery: queue('orderquery'), reverse: queue('reverse') },
      counts: { micropay: 0, orderquery: 0, reverse: 0 },
    };
  }

  private takeFault(track: Track, call: SimCall): Fault | undefined {
    return this.shiftFault(track.faults[call]);
  }

  private shiftFault(queue: Array<{ fault: Fault; left: number }>): Fault | undefined {
    const head = queue[0];
    if (!head) return undefined;
    head.left--;
    if (head.left <= 0) queue.shift();
    return head.fault;
  }

  /** transaction_id takes precedence over out_trade_no (wechatpay-v2.md §2). */
  private find(fields: Fields): Order | undefined {
    if (fields.transaction_id) return this.byTransactionId.get(fields.transaction_id);
    return fields.out_trade_no ? this.orders.get(fields.out_trade_no) : undefined;
  }

  /** The payer's side moves on with time whether or not anybody asks: confirm or cancel a USERPAYING order. */
  private settle(order: Order): void {
    if (order.entry.state !== 'USERPAYING') return;
    const elapsed = this.clock.now() - order.entry.createdAt;
    const { confirmAfterMs: confirm, cancelAfterMs: cancel } = order.track.scenario;
    const confirmed = confirm !== undefined && elapsed >= confirm;
    const cancelled = cancel !== undefined && elapsed >= cancel;
    if (confirmed && (!cancelled || confirm <= cancel!)) {
      this.charge(order, order.entry.createdAt + confirm);
    } else if (cancelled) {
      order.entry.state = 'PAYERROR';
      this.options.log?.debug('simulator payer cancelled', { out_trade_no: order.entry.outTradeNo });
    }
  }

  private charge(order: Order, at: number): void {
    const e = order.entry;
    e.state = 'SUCCESS';
    e.charged = true;
    e.everCharged = true;
    order.chargedAt = at;
    if (e.transactionId === null) {
      // 28 digits like the real ones: 4200 + 6 + yyyyMMdd + 10; far above 2^53, so it must stay a string.
      e.transactionId = '4200' + digits(6) + chinaTime(at).slice(0, 8) + digits(10);
      this.byTransactionId.set(e.transactionId, order);
    }
    this.options.log?.debug('simulator charged', { out_trade_no: e.outTradeNo, fen: e.totalFee, transaction_id: e.transactionId });
  }

  private snapshot(order: Order): LedgerEntry {
    this.settle(order);
    const { counts } = order.track;
    const refundedFen = order.entry.refundedFen + this.refundedByRefunds(order);
    return { ...order.entry, refundedFen, micropayCount: counts.micropay, queryCount: counts.orderquery, reverseCount: counts.reverse };
  }

  /** A code is single-use: spent once an order took it, unless the wallet refused that order outright. */
  private codeSpent(authCode: string): boolean {
    return (this.ordersByCode.get(authCode) ?? []).some((o) => o.entry.state !== 'FAILED');
  }

  private micropay(fields: Fields, track: Track): Fields {
    const outTradeNo = fields.out_trade_no!;
    const authCode = fields.auth_code!;
    const existing = this.orders.get(outTradeNo);
    if (existing) {
      this.settle(existing);
      if (existing.authCode !== authCode || String(existing.entry.totalFee) !== fields.total_fee) return failure('INVALID_REQUEST');
      switch (existing.entry.state) {
        case 'SUCCESS':
          // A resend of the same order is answered like the first success; it charges once.
          return this.paidFields(existing);
        case 'USERPAYING':
          return failure('USERPAYING');
        case 'FAILED':
          return failure(existing.failCode ?? 'TRADE_ERROR');
        case 'REVOKED':
          return failure('ORDERREVERSED');
        case 'PAYERROR':
        case 'CLOSED':
          return failure('ORDERCLOSED');
      }
    }

    const scenario = track.scenario;
    const e: Order['entry'] = {
      outTradeNo,
      attach: fields.attach || null,
      totalFee: Number(fields.total_fee),
      codeMasked: maskCode(authCode),
      state: 'FAILED',
      charged: false,
      everCharged: false,
      reversed: false,
      refundedFen: 0,
      transactionId: null,
      createdAt: this.clock.now(),
    };
    const order: Order = {
      entry: e,
      track,
      authCode,
      failCode: null,
      recallLeft: scenario.recallTimes ?? 0,
      chargedAt: null,
      openid: 'o' + createHash('sha256').update(authCode).digest('base64url').slice(0, 27),
      refunds: [],
      refundTrack: null,
      lastRefundAt: null,
      deviceInfo: fields.device_info || null,
      body: fields.body!,
      reversedAt: null,
    };
    const spent = this.codeSpent(authCode);
    this.orders.set(outTradeNo, order);
    const sameCode = this.ordersByCode.get(authCode) ?? [];
    sameCode.push(order);
    this.ordersByCode.set(authCode, sameCode);

    const outcome = spent ? 'AUTH_CODE_ERROR' : scenario.outcome;
    this.options.log?.debug('simulator micropay', { out_trade_no: outTradeNo, code: authCode, outcome });
    switch (outcome) {
      case 'paid':
        this.charge(order, e.createdAt);
        return this.paidFields(order);
      case 'BANKERROR':
        this.charge(order, e.createdAt);
        return failure('BANKERROR');
      case 'userpaying':
        e.state = 'USERPAYING';
        return failure('USERPAYING');
      default:
        order.failCode = outcome;
        return failure(outcome);
    }
  }

  private paidFields(order: Order): Fields {
    const e = order.entry;
    const out: Fields = {
      result_code: 'SUCCESS',
      openid: order.openid,
      is_subscribe: 'N',
      trade_type: 'MICROPAY',
      bank_type: 'OTHERS',
      fee_type: 'CNY',
      total_fee: String(e.totalFee),
      cash_fee_type: 'CNY',
      cash_fee: String(e.totalFee),
      transaction_id: e.transactionId ?? '',
      out_trade_no: e.outTradeNo,
      attach: e.attach ?? '',
      time_end: chinaTime(order.chargedAt ?? e.createdAt),
    };
    if (this.options.subAppId !== undefined) {
      out.sub_openid = 'o' + order.openid.slice(2) + 'S';
      out.sub_is_subscribe = 'N';
    }
    return out;
  }

  private orderquery(fields: Fields, order: Order | undefined): Fields {
    if (!order) return failure('ORDERNOTEXIST');
    this.settle(order);
    const e = order.entry;
    // Once a refund was accepted, WeChat Pay reports the order as REFUND (still paid for the box: codes.ts).
    const tradeState = e.state === 'FAILED' ? 'PAYERROR' : e.state === 'SUCCESS' && order.refunds.length > 0 ? 'REFUND' : e.state;
    const base: Fields = e.transactionId !== null ? this.paidFields(order) : {
      result_code: 'SUCCESS',
      trade_type: 'MICROPAY',
      fee_type: 'CNY',
      total_fee: String(e.totalFee),
      out_trade_no: e.outTradeNo,
      attach: e.attach ?? '',
    };
    const desc = e.state === 'FAILED' ? (ERR_DES[order.failCode ?? ''] ?? TRADE_STATE_DESC.PAYERROR!) : TRADE_STATE_DESC[tradeState]!;
    if (fields.device_info) base.device_info = fields.device_info;
    return { ...base, trade_state: tradeState, trade_state_desc: desc };
  }

  private reverse(order: Order | undefined): Fields {
    if (!order) return failure('ORDERNOTEXIST');
    this.settle(order);
    const e = order.entry;
    if (e.state === 'REVOKED' || e.state === 'CLOSED') return { result_code: 'SUCCESS', recall: 'N' };
    if (this.clock.now() - e.createdAt > REVERSE_WINDOW_MS) return failure('REVERSE_EXPIRE');
    // A reverse gives the whole amount back, so it cannot follow a refund. Which err_code WeChat Pay answers
    // is UNCONFIRMED; refusing keeps the ledger from ever returning more than the sale.
    if (order.refunds.length > 0) return failure('TRADE_ERROR', '订单已发生退款，不能撤销');
    if (order.recallLeft > 0) {
      order.recallLeft--;
      return { result_code: 'SUCCESS', recall: 'Y' };
    }
    if (e.charged) {
      e.charged = false;
      e.refundedFen += e.totalFee;
    }
    e.state = 'REVOKED';
    e.reversed = true;
    order.reversedAt = this.clock.now();
    this.options.log?.debug('simulator reversed', { out_trade_no: e.outTradeNo, refunded: e.refundedFen });
    return { result_code: 'SUCCESS', recall: 'N' };
  }

  // ---- Refunds (after-the-sale.md §1-2) ----

  private checkRefundFields(call: RefundCall, fields: Fields, has: (name: string) => boolean): { code: string; des?: string } | null {
    if (has('out_refund_no') && !OUT_REFUND_NO.test(fields.out_refund_no!)) return { code: 'PARAM_ERROR', des: 'out_refund_no参数格式错误' };
    if (has('refund_id') && !/^\d{1,32}$/.test(fields.refund_id!)) return { code: 'PARAM_ERROR', des: 'refund_id参数格式错误' };
    if (call === 'refundquery') {
      if (has('offset') && !/^(0|[1-9]\d{0,8})$/.test(fields.offset!)) return { code: 'PARAM_ERROR', des: 'offset参数格式错误' };
      return null;
    }
    for (const name of ['total_fee', 'refund_fee']) {
      const fee = fields[name]!;
      if (!FEE.test(fee) || !Number.isSafeInteger(Number(fee))) return { code: 'PARAM_ERROR', des: `${name}参数格式错误` };
    }
    if (has('refund_fee_type') && fields.refund_fee_type !== 'CNY') return { code: 'PARAM_ERROR', des: 'refund_fee_type参数错误' };
    if (has('refund_desc') && [...fields.refund_desc!].length > 80) return { code: 'PARAM_ERROR', des: 'refund_desc参数长度有误' };
    if (has('refund_account') && !REFUND_ACCOUNTS.includes(fields.refund_account!)) return { code: 'PARAM_ERROR', des: 'refund_account参数错误' };
    if (has('notify_url') && !/^https?:\/\/\S{1,248}$/.test(fields.notify_url!)) return { code: 'PARAM_ERROR', des: 'notify_url参数格式错误' };
    return null;
  }

  private refundApi(call: RefundCall, fields: Fields, res: ServerResponse, record: RequestRecord, signType: SignType): void {
    if (call === 'refund') {
      // A refund_fee above the request's own total_fee is refused at the communication layer, without a sign
      // (answers quoted by merchants: return_msg "invalid refund_fee").
      if (Number(fields.refund_fee) > Number(fields.total_fee)) return this.returnFail(res, record, 'invalid refund_fee');
      const no = fields.out_refund_no!;
      this.refundRequests.set(no, (this.refundRequests.get(no) ?? 0) + 1);
    }
    const target = call === 'refund' ? { order: this.find(fields), refunds: [] } : this.refundQueryTarget(fields);
    const track = target.order ? this.refundTrackFor(target.order) : undefined;
    const fault = track ? this.shiftFault(track.faults[call]) : undefined;
    if (fault) this.options.log?.debug('simulator fault', { call, fault: fault.kind, out_trade_no: target.order?.entry.outTradeNo });

    switch (fault?.kind) {
      case 'drop_before':
        return this.drop(res, record);
      case 'return_fail':
        return this.returnFail(res, record, fault.msg ?? 'system error');
      case 'http_500':
        return this.sendRaw(res, record, 500, PAGE_500, 'text/html');
      case 'system_error':
        if (call === 'refundquery') return this.deliver(res, record, signType, failure('SYSTEMERROR'), undefined);
        break;
      default:
        break;
    }
    // system_error on refund: accepted (per scenario) and answered SYSTEMERROR, the case a retry with the same out_refund_no exists for.
    let answer = call === 'refund' ? this.applyRefund(fields, target.order, track) : this.refundquery(fields, target);
    if (fault?.kind === 'system_error') answer = failure('SYSTEMERROR');
    this.deliver(res, record, signType, answer, fault);
  }

  private refundScenarioFor(order: Order): Readonly<RefundScenario> {
    return this.refundScenarios.get(order.entry.outTradeNo) ?? order.track.scenario.refund ?? this.defaultRefundScenario;
  }

  private refundTrackFor(order: Order): RefundTrack {
    const scenario = this.refundScenarioFor(order);
    if (order.refundTrack?.scenario !== scenario) {
      const queue = (call: RefundCall) => (scenario.faults?.[call] ?? []).map(({ times, ...fault }) => ({ fault: fault as Fault, left: times ?? 1 }));
      order.refundTrack = {
        scenario,
        faults: { refund: queue('refund'), refundquery: queue('refundquery') },
        refuseLeft: scenario.refuseFirst ? (scenario.refuseFirst.times ?? 1) : 0,
      };
    }
    return order.refundTrack;
  }

  /** A refund leaves PROCESSING with time whether or not anybody asks, like a USERPAYING order. */
  private settleRefund(refund: Refund): void {
    const e = refund.entry;
    if (e.status !== 'PROCESSING') return;
    const { outcome, settleAfterMs } = refund.scenario;
    const after = settleAfterMs ?? (outcome === 'PROCESSING' ? undefined : 0);
    if (after === undefined || this.clock.now() - e.requestedAt < after) return;
    e.status = outcome === 'REFUNDCLOSE' || outcome === 'CHANGE' ? outcome : 'SUCCESS';
    if (e.status === 'SUCCESS') e.successAt = e.requestedAt + after;
    this.options.log?.debug('simulator refund settled', { out_refund_no: e.outRefundNo, status: e.status });
  }

  /** What the accepted refunds of the order take from it: all but the closed ones (REFUNDCLOSE gives the amount back to refund). */
  private refundedByRefunds(order: Order): number {
    let fen = 0;
    for (const refund of order.refunds) {
      this.settleRefund(refund);
      if (refund.entry.status !== 'REFUNDCLOSE') fen += refund.entry.refundFee;
    }
    return fen;
  }

  private refundSnapshot(refund: Refund): RefundEntry {
    this.settleRefund(refund);
    return { ...refund.entry, requestCount: this.refundRequests.get(refund.entry.outRefundNo) ?? 0 };
  }

  /**
   * The refusals' err_codes: REFUND_FEE_MISMATCH, "refund_fee大于可退金额" (INVALID_REQUEST), "订单已全额退款"
   * (ERROR) and "invalid refund_fee" are what merchants quote from real answers; the others are marked where chosen.
   */
  private applyRefund(fields: Fields, order: Order | undefined, track: RefundTrack | undefined): Fields {
    const outRefundNo = fields.out_refund_no!;
    const refundFee = Number(fields.refund_fee);
    const totalFee = Number(fields.total_fee);
    const existing = this.refundsByNo.get(outRefundNo);
    if (existing) {
      // The same number for another order: WeChat Pay's err_code is UNCONFIRMED. INVALID_REQUEST is what it
      // answers for a re-entered request that differs from the recorded one (micropay's reused out_trade_no).
      if (existing.order !== order) return failure('INVALID_REQUEST');
      if (existing.entry.refundFee !== refundFee || existing.entry.totalFee !== totalFee) return failure('REFUND_FEE_MISMATCH');
      // One refund number refunds at most once: a retry is answered like the acceptance, whatever became of it since.
      return this.refundFields(existing);
    }
    if (!order || !track) return failure(fields.transaction_id ? 'INVALID_TRANSACTIONID' : 'ORDERNOTEXIST');
    this.settle(order);
    const e = order.entry;
    // Not paid, or reversed: there is nothing to refund. The err_code is UNCONFIRMED; ERROR is the refund's
    // generic business error ("申请退款业务发生错误").
    if (!e.charged) return failure('ERROR', '订单状态错误');
    // A total_fee other than the order's amount: merchants quote REFUND_FEE_MISMATCH for it too.
    if (totalFee !== e.totalFee) return failure('REFUND_FEE_MISMATCH');
    const { scenario } = track;
    const now = this.clock.now();
    if (scenario.outcome === 'TRADE_OVERDUE' || now - (order.chargedAt ?? e.createdAt) > REFUND_WINDOW_MS) return failure('TRADE_OVERDUE');
    // The 51st refund: the err_code is UNCONFIRMED; ERROR like the other refusals about the order's refunds.
    if (order.refunds.length >= MAX_REFUNDS_PER_ORDER) return failure('ERROR', `每个支付订单的部分退款次数不能超过${MAX_REFUNDS_PER_ORDER}次`);
    const left = e.totalFee - this.refundedByRefunds(order);
    if (left <= 0) return failure('ERROR', '订单已全额退款');
    if (refundFee > left) return failure('INVALID_REQUEST', 'refund_fee大于可退金额');
    if (scenario.outcome === 'NOTENOUGH') return failure('NOTENOUGH', REFUND_NOTENOUGH_DES);
    if (scenario.outcome === 'USER_ACCOUNT_ABNORMAL') return failure('USER_ACCOUNT_ABNORMAL');
    if (track.refuseLeft > 0) {
      track.refuseLeft--;
      return failure(scenario.refuseFirst!.code);
    }
    if (scenario.minIntervalMs !== undefined && order.lastRefundAt !== null && now - order.lastRefundAt < scenario.minIntervalMs) {
      return failure('FREQUENCY_LIMITED');
    }

    const refund: Refund = {
      entry: {
        outRefundNo,
        // 29 digits like the real ones (50 + 10 + yyyyMMdd + 9); beyond 2^53, so a string.
        refundId: '50' + digits(10) + chinaTime(now).slice(0, 8) + digits(9),
        outTradeNo: e.outTradeNo,
        transactionId: e.transactionId!,
        refundFee,
        totalFee: e.totalFee,
        status: 'PROCESSING',
        refundDesc: fields.refund_desc || null,
        requestedAt: now,
        successAt: null,
        queryCount: 0,
      },
      order,
      scenario,
      refundAccount: fields.refund_account || 'REFUND_SOURCE_UNSETTLED_FUNDS',
    };
    order.refunds.push(refund);
    order.lastRefundAt = now;
    this.refundList.push(refund);
    this.refundsByNo.set(outRefundNo, refund);
    this.refundsById.set(refund.entry.refundId, refund);
    this.settleRefund(refund);
    this.options.log?.debug('simulator refund accepted', { out_refund_no: outRefundNo, out_trade_no: e.outTradeNo, fen: refundFee, outcome: scenario.outcome });
    return this.refundFields(refund);
  }

  private refundFields(refund: Refund): Fields {
    const r = refund.entry;
    return {
      result_code: 'SUCCESS',
      transaction_id: r.transactionId,
      out_trade_no: r.outTradeNo,
      out_refund_no: r.outRefundNo,
      refund_id: r.refundId,
      refund_fee: String(r.refundFee),
      total_fee: String(r.totalFee),
      fee_type: 'CNY',
      cash_fee: String(r.totalFee),
      cash_refund_fee: String(r.refundFee),
      coupon_refund_fee: '0',
      coupon_refund_count: '0',
    };
  }

  /** Documented priority: refund_id, then out_refund_no, then transaction_id, then out_trade_no. */
  private refundQueryTarget(fields: Fields): { order: Order | undefined; refunds: Refund[] } {
    const one = fields.refund_id ? this.refundsById.get(fields.refund_id) : fields.out_refund_no ? this.refundsByNo.get(fields.out_refund_no) : null;
    if (one !== null) return { order: one?.order, refunds: one ? [one] : [] };
    const order = this.find(fields);
    return { order, refunds: order?.refunds ?? [] };
  }

  /**
   * Lists the refunds REFUND_PAGE at a time from `offset`; `$n` counts from 0 within the answer (UNCONFIRMED
   * for pages past the first), and total_refund_count comes only with an offset.
   */
  private refundquery(fields: Fields, target: { order: Order | undefined; refunds: Refund[] }): Fields {
    const { order, refunds } = target;
    if (!order || refunds.length === 0) return failure('REFUNDNOTEXIST');
    const paged = fields.offset !== undefined && fields.offset !== '';
    const offset = paged ? Number(fields.offset) : 0;
    const page = refunds.slice(offset, offset + REFUND_PAGE);
    if (page.length === 0) return failure('REFUNDNOTEXIST');
    const e = order.entry;
    const out: Fields = {
      result_code: 'SUCCESS',
      transaction_id: e.transactionId ?? '',
      out_trade_no: e.outTradeNo,
      total_fee: String(e.totalFee),
      fee_type: 'CNY',
      cash_fee: String(e.totalFee),
      refund_count: String(page.length),
    };
    if (paged) out.total_refund_count = String(refunds.length);
    page.forEach((refund, n) => {
      this.settleRefund(refund);
      refund.entry.queryCount++;
      const r = refund.entry;
      out[`out_refund_no_${n}`] = r.outRefundNo;
      out[`refund_id_${n}`] = r.refundId;
      out[`refund_channel_${n}`] = 'ORIGINAL';
      out[`refund_fee_${n}`] = String(r.refundFee);
      out[`refund_status_${n}`] = r.status;
      out[`refund_account_${n}`] = refund.refundAccount;
      // CHANGE: the payer's bank card could not take it; otherwise the payer's WeChat balance.
      out[`refund_recv_accout_${n}`] = r.status === 'CHANGE' ? '招商银行借记卡0403' : '支付用户零钱';
      if (r.status === 'SUCCESS') out[`refund_success_time_${n}`] = chinaDateTime(r.successAt ?? r.requestedAt);
    });
    return out;
  }

  // ---- The daily bill (after-the-sale.md §3) ----

  /**
   * downloadbill. Failures are XML with return_code=FAIL and no sign; the return_msg texts are the ones public
   * SDKs list for this call (error_code 20002 with No Bill Exist is quoted from real answers). Which answer a
   * date older than 3 months or after today gets is UNCONFIRMED: `invalid bill_date` here.
   */
  private billApi(fields: Fields, res: ServerResponse, record: RequestRecord): void {
    const o = this.options;
    const fail = (msg: string, extra: Fields = {}): void =>
      this.sendRaw(res, record, 200, encodeXml({ return_code: 'FAIL', return_msg: msg, ...extra }), 'xml');
    const has = (name: string): boolean => fields[name] !== undefined && fields[name] !== '';
    let signType: SignType = 'MD5';
    if (has('sign_type')) {
      if (!SIGN_TYPES.includes(fields.sign_type as SignType)) return fail('invalid sign_type');
      signType = fields.sign_type as SignType;
    }
    if (!verify(fields, o.apiKey, signType)) return fail('sign error');
    for (const name of ['appid', 'mch_id', 'nonce_str', 'bill_date']) if (!has(name)) return fail('missing parameter');
    if (o.subMchId !== undefined && !has('sub_mch_id')) return fail('missing parameter');
    if (fields.mch_id !== o.mchId) return fail('invalid parameter');
    if (fields.appid !== o.appId) return fail('invalid appid');
    if (o.subMchId === undefined ? has('sub_mch_id') : fields.sub_mch_id !== o.subMchId) return fail('invalid parameter');
    if (fields.nonce_str!.length > 32) return fail('nonce_str too long');
    const billType = (has('bill_type') ? fields.bill_type! : 'ALL') as BillType;
    if (!BILL_TYPES.includes(billType)) return fail('invalid bill_type');
    if (has('tar_type') && fields.tar_type !== 'GZIP') return fail('invalid tar_type, Only GZIP supported');
    const billDate = fields.bill_date!;
    const served = this.servedBills.get(billDate);
    if (served !== undefined) {
      const xml = served.replace(/^\ufeff/, '').trimStart().startsWith('<');
      if (xml || !has('tar_type')) return this.sendRaw(res, record, 200, served, xml ? 'xml' : 'text');
      const zipped = gzipSync(Buffer.from(served, 'utf8'));
      record.status = 200;
      if (res.destroyed || res.headersSent) return;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': zipped.length, server: 'nginx' });
      res.end(zipped);
      return;
    }
    const day = chinaDay(billDate);
    const now = this.clock.now();
    const today = chinaTime(now).slice(0, 8);
    if (day === null || billDate > today || billDate < threeMonthsBefore(now)) return fail('invalid bill_date');
    const readyAfter = o.billReadyAfterMs ?? BILL_READY_AFTER_MS;
    if (now < day.end + readyAfter) return fail('Bill Creating');
    const text = this.billText(billType, day, Math.min(now, day.end + Math.max(0, readyAfter)));
    if (text === null) return fail('No Bill Exist', { error_code: '20002' });
    this.options.log?.debug('simulator bill', { bill_date: billDate, bill_type: billType, gzip: has('tar_type'), chars: text.length });
    if (!has('tar_type')) return this.sendRaw(res, record, 200, text, 'text');
    const zipped = gzipSync(Buffer.from(text, 'utf8'));
    record.status = 200;
    if (res.destroyed || res.headersSent) return;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': zipped.length, server: 'nginx' });
    res.end(zipped);
  }

  /**
   * The ledger as bill rows, as they stood at `asOf` (when WeChat Pay generated the bill, or now for a bill asked
   * for early): a row per paid order at its payment time (REVOKED when reversed by then, SUCCESS otherwise), a
   * REFUND row per accepted refund at its request time, its refund_status as of `asOf`.
   */
  private ledgerBillLines(asOf: number): BillLine[] {
    const lines: BillLine[] = [];
    const amended = (key: string): Partial<SimBillRow> | undefined => this.billAmendments.get(key);
    for (const order of this.orders.values()) {
      this.settle(order);
      const e = order.entry;
      if (!e.everCharged || order.chargedAt === null || order.chargedAt > asOf || e.transactionId === null) continue;
      if (this.droppedFromBill.has(e.outTradeNo)) continue;
      const revoked = e.reversed && order.reversedAt !== null && order.reversedAt <= asOf;
      const common = {
        outTradeNo: e.outTradeNo,
        transactionId: e.transactionId,
        deviceInfo: order.deviceInfo ?? '',
        openId: order.openid,
        bankType: 'OTHERS',
        couponFen: 0,
        couponRefundFen: 0,
        body: order.body,
        attach: e.attach ?? '',
        paidAt: order.chargedAt,
      };
      // The trade row keeps the order's amount. A reversed order's fee is given back with the money: 0. How
      // WeChat Pay writes a REVOKED row's amounts is UNCONFIRMED.
      lines.push({
        ...common,
        at: order.chargedAt,
        tradeState: revoked ? 'REVOKED' : 'SUCCESS',
        settlementFen: e.totalFee,
        orderFen: e.totalFee,
        refundId: '0',
        outRefundNo: '0',
        refundFen: 0,
        requestedRefundFen: 0,
        refundType: '',
        refundStatus: '',
        feeFen: revoked ? 0 : feeOf(e.totalFee),
        refundSuccessAt: null,
        ...amended(e.outTradeNo),
      });
      for (const refund of order.refunds) {
        const r = refund.entry;
        if (r.requestedAt > asOf) continue;
        const status = refundStatusAt(refund, asOf);
        const key = `${e.outTradeNo}\u0000${r.outRefundNo}`;
        // Refund rows as real bills write them: 0.00 in the order amounts, the refund in 退款金额 and
        // 申请退款金额 (no coupons here), the fee given back as a negative 手续费.
        lines.push({
          ...common,
          at: r.requestedAt,
          tradeState: 'REFUND',
          settlementFen: 0,
          orderFen: 0,
          refundId: r.refundId,
          outRefundNo: r.outRefundNo,
          refundFen: r.refundFee,
          requestedRefundFen: r.refundFee,
          refundType: 'ORIGINAL',
          refundStatus: status,
          feeFen: -feeOf(r.refundFee),
          refundSuccessAt: status === 'SUCCESS' ? (r.successAt ?? successAtOf(refund)) : null,
          ...amended(key),
        });
      }
    }
    return lines;
  }

  /** The bill's text, or null when it would have no row (No Bill Exist). */
  private billText(billType: BillType, day: { start: number; end: number }, asOf: number): string | null {
    const planted: BillLine[] = this.plantedRows.map((row) => ({ ...row, paidAt: row.at, refundSuccessAt: null }));
    const lines = [...this.ledgerBillLines(asOf), ...planted]
      .filter((line) => line.at >= day.start && line.at < day.end)
      .filter((line) => (billType === 'ALL' ? true : billType === 'SUCCESS' ? line.tradeState === 'SUCCESS' : billType === 'REFUND' ? line.tradeState === 'REFUND' : false))
      .sort((a, b) => a.at - b.at);
    if (lines.length === 0) return null;
    const columns = billType === 'ALL' ? ALL_COLUMNS : billType === 'SUCCESS' ? SUCCESS_COLUMNS : REFUND_COLUMNS;
    const o = this.options;
    const yuan = (fen: number): string => formatYuan(fen);
    const out: string[] = [columns.join(',')];
    const sum = { settlement: 0, refund: 0, couponRefund: 0, fee: 0, order: 0, requested: 0 };
    for (const line of lines) {
      const cells: Record<string, string> = {
        交易时间: chinaDateTime(billType === 'REFUND' ? line.paidAt : line.at),
        公众账号ID: o.appId,
        商户号: o.mchId,
        特约商户号: o.subMchId ?? '0',
        设备号: line.deviceInfo,
        微信订单号: line.transactionId,
        商户订单号: line.outTradeNo,
        用户标识: line.openId,
        交易类型: 'MICROPAY',
        交易状态: line.tradeState,
        付款银行: line.bankType,
        货币种类: 'CNY',
        应结订单金额: yuan(line.settlementFen),
        代金券金额: yuan(line.couponFen),
        退款申请时间: chinaDateTime(line.at),
        退款成功时间: line.refundSuccessAt === null ? '' : chinaDateTime(line.refundSuccessAt),
        微信退款单号: line.refundId,
        商户退款单号: line.outRefundNo,
        退款金额: yuan(line.refundFen),
        充值券退款金额: yuan(line.couponRefundFen),
        退款类型: line.refundType,
        退款状态: line.refundStatus,
        商品名称: line.body,
        商户数据包: line.attach,
        // The fee column has five decimals; the simulator's fees are whole fen, as real ones are.
        手续费: `${yuan(line.feeFen)}000`,
        费率: FEE_RATE_TEXT,
        订单金额: yuan(line.orderFen),
        申请退款金额: yuan(line.requestedRefundFen),
        费率备注: '',
        ...line.raw,
      };
      out.push(columns.map((name) => '`' + (cells[name] ?? '')).join(','));
      // The summary adds up the cells as written, so that a bill is whole also when a test wrote a cell raw
      // (a raw cell that is not an amount, a damaged bill on purpose, counts as what the row held).
      const written = (name: string, fen: number): number => (line.raw?.[name] === undefined ? fen : (parseYuan(line.raw[name]!) ?? fen));
      sum.settlement += written('应结订单金额', line.settlementFen);
      sum.refund += written('退款金额', line.refundFen);
      sum.couponRefund += written('充值券退款金额', line.couponRefundFen);
      sum.fee += line.feeFen;
      sum.order += written('订单金额', line.orderFen);
      sum.requested += written('申请退款金额', line.requestedRefundFen);
    }
    out.push(SUMMARY_COLUMNS.join(','));
    out.push(
      [String(lines.length), yuan(sum.settlement), yuan(sum.refund), yuan(sum.couponRefund), `${yuan(sum.fee)}000`, yuan(sum.order), yuan(sum.requested)]
        .map((v) => '`' + v)
        .join(','),
    );
    return (o.billBom === false ? '' : '\ufeff') + out.join('\r\n') + '\r\n';
  }

  /** Signs the answer with the request's algorithm (without echoing sign_type, like the real one) and sends it through the fault. */
  private deliver(res: ServerResponse, record: RequestRecord, signType: SignType, result: Fields, fault: Fault | undefined): void {
    const o = this.options;
    const fields: Fields = { return_code: 'SUCCESS', return_msg: 'OK', appid: o.appId, mch_id: o.mchId };
    if (o.subAppId !== undefined) fields.sub_appid = o.subAppId;
    if (o.subMchId !== undefined) fields.sub_mch_id = o.subMchId;
    fields.nonce_str = nonce();
    Object.assign(fields, result);
    for (const [k, v] of Object.entries(fields)) if (v === '') delete fields[k];
    if (fault?.kind === 'wrong_mch_id') fields.mch_id = o.mchId === '1900000109' ? '1900000108' : '1900000109';
    const signature = sign(fields, fault?.kind === 'forge_signature' ? o.apiKey + 'x' : o.apiKey, signType);
    let body = encodeXml({ ...fields, sign: signature });
    switch (fault?.kind) {
      case 'drop_after':
        return this.drop(res, record);
      case 'hang':
        // Acted; the answer never comes. close() destroys the socket.
        record.status = 0;
        return;
      case 'garbage':
        body = GARBAGE;
        break;
      case 'truncated':
        body = body.slice(0, Math.floor(body.length / 2));
        break;
      case 'dtd':
        body = DOCTYPE + body;
        break;
      case 'delay': {
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          this.sendRaw(res, record, 200, body, 'xml');
        }, fault.ms);
        this.timers.add(timer);
        return;
      }
      default:
        break;
    }
    this.sendRaw(res, record, 200, body, 'xml');
  }
}
