import { createHash, randomBytes, randomInt } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { systemClock, type Clock } from '../clock.js';
import { maskCode, type Logger } from '../log.js';
import { SIGN_TYPES, sign, verify, type SignType } from '../wechatpay/sign.js';
import { decodeXml, encodeXml } from '../wechatpay/xml.js';
import { createTestPki, type TestPki } from './ca.js';
import { checkScenario, type Fault, type Scenario, type SimCall } from './scenarios.js';

export { checkScenario, paymentCode, SCENARIOS, type Fault, type FaultKind, type Outcome, type Scenario, type SimCall } from './scenarios.js';

/**
 * A WeChat Pay V2 gateway stand-in over real HTTPS (micropay, orderquery, reverse), for the tests and
 * `scanbox demo`. It validates like the real one (signature over every field, merchant ids, field formats,
 * mTLS on /secapi) because the box is tested against it, and it keeps a ledger of what the payer was
 * really charged so tests can check money, not just answers.
 */

export type TradeState = 'USERPAYING' | 'SUCCESS' | 'PAYERROR' | 'REVOKED' | 'CLOSED' | 'FAILED';

export interface LedgerEntry {
  outTradeNo: string;
  attach: string | null;
  totalFee: number;
  codeMasked: string;
  /** FAILED = refused at micropay (NOTENOUGH...), nothing charged. */
  state: TradeState;
  /** Money taken from the payer and not given back. */
  charged: boolean;
  everCharged: boolean;
  /** A reverse succeeded (refund if it was charged, close if not). */
  reversed: boolean;
  /** Money returned by reverse of a charged order. */
  refundedFen: number;
  /** 28 digits, assigned when charged. */
  transactionId: string | null;
  /** Requests that passed the signature and field checks for this out_trade_no, faulted ones included. */
  micropayCount: number;
  queryCount: number;
  reverseCount: number;
  createdAt: number;
}

export interface RequestRecord {
  call: SimCall | 'unknown';
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
  log?: Logger;
}

const PATHS: Record<string, SimCall> = {
  '/pay/micropay': 'micropay',
  '/pay/orderquery': 'orderquery',
  '/secapi/pay/reverse': 'reverse',
};

/** WeChat Pay allows digits, letters and `_-|*@` in out_trade_no (PHP demo comment). */
const OUT_TRADE_NO = /^[A-Za-z0-9_\-|*@]{1,32}$/;
const WECHAT_CODE = /^1[0-5]\d{16}$/;
const MAX_BODY = 64 * 1024;
/** Reverse is allowed within 7 days (wechatpay-v2.md §5). */
const REVERSE_WINDOW_MS = 7 * 24 * 3600 * 1000;

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
};

const TRADE_STATE_DESC: Record<string, string> = {
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
}

/** yyyyMMddHHmmss in China time (UTC+8), as WeChat Pay writes time_end. */
function chinaTime(ms: number): string {
  const d = new Date(ms + 8 * 3600 * 1000);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getUTCFullYear(), 4)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`;
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

export class GatewaySimulator {
  readonly origin: string;
  readonly pki: TestPki;
  private readonly options: GatewaySimulatorOptions;
  private readonly clock: Clock;
  private readonly defaultScenario: Readonly<Scenario>;
  private readonly server: https.Server;
  private readonly orders = new Map<string, Order>();
  private readonly byTransactionId = new Map<string, Order>();
  private readonly ordersByCode = new Map<string, Order[]>();
  private readonly tracks = new Map<string, Track>();
  private readonly scenarios = new Map<string, Readonly<Scenario>>();
  private readonly log: RequestRecord[] = [];
  private readonly listeners = new Set<(call: SimCall, outTradeNo: string | null) => void>();
  private readonly sockets = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private accepted = 0;
  private closing: Promise<void> | null = null;

  static async start(options: GatewaySimulatorOptions): Promise<GatewaySimulator> {
    for (const name of ['mchId', 'appId', 'apiKey'] as const) {
      if (typeof options[name] !== 'string' || options[name] === '') throw new TypeError(`GatewaySimulator: ${name} is required`);
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
    server.keepAliveTimeout = 75_000;
    server.headersTimeout = 80_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new GatewaySimulator(server, pki, options);
  }

  private constructor(server: https.Server, pki: TestPki, options: GatewaySimulatorOptions) {
    this.server = server;
    this.pki = pki;
    this.options = options;
    this.clock = options.clock ?? systemClock;
    this.defaultScenario = checkScenario(options.defaultScenario ?? { outcome: 'paid' });
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

  requests(): RequestRecord[] {
    return this.log.map((r) => ({ ...r, tls: { ...r.tls } }));
  }

  /** Fired once a request body to one of the three API paths is in, before any check or action. */
  onRequest(listener: (call: SimCall, outTradeNo: string | null) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
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

  private process(call: SimCall | 'unknown', req: IncomingMessage, res: ServerResponse, record: RequestRecord, raw: Buffer | null): void {
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
    if (call === 'reverse' && !record.tls.authorized) {
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

  private api(call: SimCall, fields: Fields, res: ServerResponse, record: RequestRecord): void {
    let signType: SignType = 'MD5';
    const declared = fields.sign_type;
    if (declared !== undefined && declared !== '') {
      if (!SIGN_TYPES.includes(declared as SignType)) return this.returnFail(res, record, 'sign_type参数格式错误');
      signType = declared as SignType;
    }
    if (!verify(fields, this.options.apiKey, signType)) return this.returnFail(res, record, '签名错误');
    const refuse = (code: string, des?: string): void => this.deliver(res, record, signType, failure(code, des), undefined);

    const refusal = this.checkFields(call, fields);
    if (refusal) return refuse(refusal.code, refusal.des);

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

  private checkFields(call: SimCall, fields: Fields): { code: string; des?: string } | null {
    const has = (name: string): boolean => fields[name] !== undefined && fields[name] !== '';
    const required = ['appid', 'mch_id', 'nonce_str'];
    if (call === 'micropay') required.push('body', 'out_trade_no', 'total_fee', 'spbill_create_ip', 'auth_code');
    if (this.options.subMchId !== undefined) required.push('sub_mch_id');
    for (const name of required) if (!has(name)) return { code: 'LACK_PARAMS', des: `缺少参数${name}` };
    if (call !== 'micropay' && !has('out_trade_no') && !has('transaction_id')) {
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
    const queue = track.faults[call];
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
    return { ...order.entry, micropayCount: counts.micropay, queryCount: counts.orderquery, reverseCount: counts.reverse };
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
    const tradeState = e.state === 'FAILED' ? 'PAYERROR' : e.state;
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
    this.options.log?.debug('simulator reversed', { out_trade_no: e.outTradeNo, refunded: e.refundedFen });
    return { result_code: 'SUCCESS', recall: 'N' };
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
