import { performance } from 'node:perf_hooks';
import { Agent, buildConnector } from 'undici';
import type { Logger } from '../log.js';
import { NEVER_CONNECTED, errorCodes, errorText, neverConnected, type ApiCall, type ApiOutcome, type BillOutcome, type BillType, type FailureCode } from '../wechatpay/client.js';
import { micropayAction } from '../wechatpay/codes.js';
import {
  MAX_BILL_TEXT,
  PROTOCOL_VERSION,
  REFUSAL_STATUS,
  parseBillOutcome,
  parseOutcome,
  parseRefusal,
  type BillRequest,
  type MicropayRequest,
  type OrderRequest,
  type Refusal,
  type RefusalCode,
  type RefundQueryRequest,
  type RefundRequest,
} from './protocol.js';

/**
 * The box's side of merchant-backend mode (contract §8): the engine's gateway seam (PaymentGateway,
 * RefundGateway, and downloadbill for reconcile) implemented by asking the backend over mutual TLS instead of
 * WeChat Pay. The signatures and outcome types are WechatPayClient's, and so are the money rules: whatever is
 * not a well-formed answer from the backend is `unknown`, `unsent` only when the request cannot have reached it.
 *
 * A refusal by the backend's policy means nothing of the call went to WeChat Pay. It becomes an outcome the
 * engine already knows how to handle, with no new money logic:
 * - micropay: a `business` answer whose err_code the engine takes as a final failure (nothing charged, no
 *   query, no reverse), which is true: this out_trade_no is never sent again, and it never reached WeChat Pay.
 *   The backend's own code is in err_code_des and in fields.backend_refusal.
 * - refund: a `business` answer the refund engine takes as final (REFUND_REFUSAL): the register reads
 *   `FAILED RID CODE TEXT` at once and nothing counts against the sale or the day.
 * - every other call: `unknown`. A refused orderquery, reverse, refund or refundquery says nothing about the
 *   order at WeChat Pay, so the engine keeps its course: a reverse stays pending and is retried (a rate limit
 *   passes, a box enrolled again gets through), a refund keeps its out_refund_no and is asked about again.
 */

export interface BackendGatewayOptions {
  /** The backend's https:// origin (SCANBOX_BACKEND). */
  origin: string;
  /** The box's client certificate and key from `scanbox backend enroll`. */
  certificate: { certPem: string; keyPem: string };
  /** The backend's CA: the only trust anchor for the backend's server certificate. */
  caPem: string;
  /**
   * Per call, in ms. Defaults: the backend's own upstream timeout (micropay once; the others twice, for the
   * failover to the backup domain), plus the 5 s a call may wait at the backend for a connection to WeChat
   * Pay (backend/upstream.ts), plus 5 s, so that the box does not give up while the backend still waits: its
   * reverse then never overtakes a micropay still at the backend.
   */
  timeouts?: Partial<Record<ApiCall, number>> & { connect?: number };
  log?: Logger;
}

const DEFAULT_TIMEOUTS: Readonly<Record<ApiCall | 'connect', number>> = {
  micropay: 20_000,
  orderquery: 22_000,
  reverse: 26_000,
  refund: 22_000,
  refundquery: 18_000,
  downloadbill: 65_000,
  connect: 5_000,
};

const MAX_ANSWER_BYTES = 512 * 1024;
const KEEP_ALIVE_MS = 20_000;
/** The most a call's connection is kept idle whatever the backend's Keep-Alive hint says (it says 150 s, for heartbeats). */
const KEEP_ALIVE_MAX_MS = 30_000;

/**
 * The err_code a refused micropay is reported with: each one micropayAction calls `final` or `config`, so the
 * engine ends the sale at once (a test checks every refusal code against the table).
 */
export const MICROPAY_REFUSAL_CODE: Readonly<Record<RefusalCode, string>> = {
  BAD_REQUEST: 'PARAM_ERROR',
  BOX_UNKNOWN: 'NOAUTH',
  BOX_REVOKED: 'NOAUTH',
  NOT_YOUR_ORDER: 'NOAUTH',
  REFUNDS_OFF: 'NOAUTH',
  NOT_CHARGED: 'NOAUTH',
  OVER_AMOUNT: 'NOAUTH',
  REFUND_LIMIT: 'NOAUTH',
  BILLS_OFF: 'NOAUTH',
  AMOUNT_LIMIT: 'TRADE_ERROR',
  RATE_LIMITED: 'TRADE_ERROR',
  BACKEND_UNAVAILABLE: 'TRADE_ERROR',
};

/**
 * A refund the backend's policy refused (contract §8) ends at once as `FAILED RID CODE TEXT`: nothing of it went
 * to WeChat Pay, and the refund engine takes a `business` answer carrying fields.backend_refusal as final. The
 * code is one of the register's refund codes (contract §3); the text, which the engine shows as it is, says the
 * merchant's backend decided. Only a rate limit and a backend that cannot record stay unknown (tried again).
 */
export const REFUND_REFUSAL: Readonly<Partial<Record<RefusalCode, { code: string; text: string }>>> = {
  REFUNDS_OFF: { code: 'REFUNDS_OFF', text: "The merchant's backend does not let this box refund: refund in the merchant platform" },
  NOT_CHARGED: { code: 'NOT_PAID', text: "The merchant's backend has no paid sale of this box with that REF: nothing refunded" },
  OVER_AMOUNT: { code: 'OVER_AMOUNT', text: "More than is left to refund of that sale, as the merchant's backend knows it: nothing refunded" },
  REFUND_LIMIT: { code: 'REFUND_LIMIT', text: "This box's refunds today would pass the merchant's daily limit: refund in the merchant platform" },
  AMOUNT_LIMIT: { code: 'REFUND_LIMIT', text: "More than this box may refund at once (merchant's backend): refund in the merchant platform" },
  NOT_YOUR_ORDER: { code: 'NOT_PAID', text: "The merchant's backend says that sale is not this box's: nothing refunded" },
  BAD_REQUEST: { code: 'REFUNDS_OFF', text: "The merchant's backend refused the refund as asked: nothing refunded, call the technician" },
  BOX_REVOKED: { code: 'REFUNDS_OFF', text: "This box was cut off by the merchant's backend: nothing refunded, call the technician" },
  BOX_UNKNOWN: { code: 'REFUNDS_OFF', text: "This box is not enrolled at the merchant's backend: nothing refunded, call the technician" },
};

/**
 * What proves a request never left the box: what the direct client counts (only making a connection raises
 * those), and the backend's server certificate failing to verify, where the box stops in the handshake.
 */
const NEVER_SENT: ReadonlySet<string> = new Set([
  ...NEVER_CONNECTED,
  // The backend's server certificate did not verify: the box stops in the handshake, before any request.
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function clip(text: string, max = 200): string {
  const line = text.replace(/[\r\n\t]+/g, ' ');
  return line.length > max ? `${line.slice(0, max)}...` : line;
}

type Unknown = Extract<ApiOutcome, { kind: 'unknown' }>;

export class BackendGateway {
  readonly origin: string;
  private readonly timeouts: Readonly<Record<ApiCall | 'connect', number>>;
  private readonly log: Logger | undefined;
  private readonly agent: Agent;
  private readonly billAgent: Agent;
  private closing: Promise<void> | undefined;

  constructor(options: BackendGatewayOptions) {
    let url: URL;
    try {
      url = new URL(options.origin);
    } catch {
      throw new TypeError('origin must be an https:// URL');
    }
    if (url.protocol !== 'https:' || url.pathname !== '/' || url.search !== '' || url.username !== '') {
      throw new TypeError('origin must be an https:// origin (scheme, host and port only)');
    }
    this.origin = url.origin;
    if (typeof options.caPem !== 'string' || !options.caPem.includes('BEGIN CERTIFICATE')) throw new TypeError('caPem must be the backend CA in PEM');
    const t = options.timeouts ?? {};
    const timeouts = { ...DEFAULT_TIMEOUTS };
    for (const [name, value] of Object.entries(t)) {
      if (value === undefined) continue;
      if (!(name in DEFAULT_TIMEOUTS) || typeof value !== 'number' || !(value > 0)) throw new TypeError(`timeouts.${name} must be a positive number of ms`);
      timeouts[name as ApiCall | 'connect'] = Math.ceil(value);
    }
    this.timeouts = Object.freeze(timeouts);
    this.log = options.log;
    const connect = buildConnector({
      // The backend's CA replaces Node's bundled roots: no public CA can stand in for the backend.
      ca: [options.caPem],
      cert: options.certificate.certPem,
      key: options.certificate.keyPem,
      minVersion: 'TLSv1.2',
      timeout: this.timeouts.connect,
    });
    const agent = (maxResponseSize: number): Agent =>
      new Agent({ connect, keepAliveTimeout: KEEP_ALIVE_MS, keepAliveMaxTimeout: KEEP_ALIVE_MAX_MS, maxResponseSize, pipelining: 1, connections: 2 });
    this.agent = agent(MAX_ANSWER_BYTES);
    this.billAgent = agent(2 * MAX_BILL_TEXT + 4096);
  }

  /** Nothing to prepare yet: connections are made on the first call and kept alive. */
  warm(): Promise<void> {
    return Promise.resolve();
  }

  cool(): Promise<void> {
    return Promise.resolve();
  }

  micropay(req: MicropayRequest): Promise<ApiOutcome> {
    const body: Record<string, unknown> = { outTradeNo: req.outTradeNo, totalFee: req.totalFee, authCode: req.authCode, body: req.body };
    if (req.deviceInfo) body.deviceInfo = req.deviceInfo;
    if (req.attach) body.attach = req.attach;
    return this.call('micropay', body, req.outTradeNo, req.authCode);
  }

  orderquery(req: OrderRequest): Promise<ApiOutcome> {
    return this.call('orderquery', { outTradeNo: req.outTradeNo }, req.outTradeNo, null);
  }

  reverse(req: OrderRequest): Promise<ApiOutcome> {
    return this.call('reverse', { outTradeNo: req.outTradeNo }, req.outTradeNo, null);
  }

  refund(req: RefundRequest): Promise<ApiOutcome> {
    const body: Record<string, unknown> = { outTradeNo: req.outTradeNo, outRefundNo: req.outRefundNo, totalFee: req.totalFee, refundFee: req.refundFee };
    if (req.refundDesc) body.refundDesc = req.refundDesc;
    return this.call('refund', body, req.outTradeNo, null);
  }

  refundquery(req: RefundQueryRequest): Promise<ApiOutcome> {
    return this.call('refundquery', { outRefundNo: req.outRefundNo }, null, null);
  }

  async downloadbill(req: { billDate: string; billType?: BillType; gzip?: boolean }): Promise<BillOutcome> {
    const body: BillRequest = { billDate: req.billDate };
    if (req.billType !== undefined) body.billType = req.billType;
    if (req.gzip !== undefined) body.gzip = req.gzip;
    const started = performance.now();
    const sent = await this.send('downloadbill', body, started);
    let outcome: BillOutcome;
    if (sent.kind === 'failed') outcome = { ...sent.outcome, call: 'downloadbill' };
    else if (sent.kind === 'refused') outcome = this.refusedUnknown('downloadbill', sent.refusal, started);
    else outcome = parseBillOutcome(sent.json) ?? this.unknown('downloadbill', 'BAD_XML', "the backend's answer is not a bill outcome", started, this.origin);
    this.logCall('downloadbill', null, outcome);
    return outcome;
  }

  close(): Promise<void> {
    this.closing ??= Promise.all([this.agent.close(), this.billAgent.close()]).then(() => undefined);
    return this.closing;
  }

  private async call(call: Exclude<ApiCall, 'downloadbill'>, body: Record<string, unknown>, outTradeNo: string | null, authCode: string | null): Promise<ApiOutcome> {
    const started = performance.now();
    let outcome: ApiOutcome;
    try {
      const sent = await this.send(call, body, started);
      if (sent.kind === 'failed') outcome = sent.outcome;
      else if (sent.kind === 'refused') outcome = this.refused(call, sent.refusal, started);
      else outcome = parseOutcome(call, sent.json, outTradeNo) ?? this.unknown(call, 'BAD_XML', "the backend's answer is not a valid outcome for this call", started, this.origin);
    } catch (error) {
      outcome = this.unknown(call, 'NETWORK', `internal error: ${errorText(error)}`, started, null);
    }
    if (authCode !== null && authCode.length >= 6 && outcome.kind === 'unknown') outcome = { ...outcome, message: outcome.message.split(authCode).join('[payment code]') };
    this.logCall(call, outTradeNo, outcome);
    return outcome;
  }

  private refused(call: Exclude<ApiCall, 'downloadbill'>, refusal: Refusal, started: number): ApiOutcome {
    const refund = call === 'refund' ? REFUND_REFUSAL[refusal.code] : undefined;
    if (refund !== undefined) {
      return {
        kind: 'business',
        call,
        errCode: refund.code,
        errCodeDes: refund.text,
        fields: { backend_refusal: refusal.code },
        ms: Math.round(performance.now() - started),
        origin: this.origin,
      };
    }
    if (call !== 'micropay') return this.refusedUnknown(call, refusal, started);
    // The backend refuses BACKEND_UNAVAILABLE only before anything went upstream (it could not read or record
    // the call): provably unsent, so the sale ends OFFLINE at once (contract §8), with nothing to query or reverse.
    // Not NETWORK: the backend did answer, so the box does not count WeChat Pay unreachable and refuse the next
    // sales itself; each one asks the backend again and goes through as soon as its database takes writes.
    // The engine reads `refusal` to say so: the backend answered that it cannot take sales now, not that the
    // request never left the box.
    if (refusal.code === 'BACKEND_UNAVAILABLE') return { ...this.refusedUnknown(call, refusal, started), unsent: true };
    const errCode = MICROPAY_REFUSAL_CODE[refusal.code];
    // Belt and braces: a code the engine would query and reverse must never stand for "nothing was sent".
    if (micropayAction(errCode) === 'unknown') throw new Error(`refusal ${refusal.code} maps to ${errCode}, which is not final`);
    return {
      kind: 'business',
      call,
      errCode,
      errCodeDes: clip(`scanbox backend refused the call (${refusal.code}): ${refusal.text}`),
      fields: { backend_refusal: refusal.code },
      ms: Math.round(performance.now() - started),
      origin: this.origin,
    };
  }

  private refusedUnknown<C extends ApiCall>(call: C, refusal: Refusal, started: number): Unknown & { call: C } {
    const failure: FailureCode = refusal.code === 'BOX_REVOKED' || refusal.code === 'BOX_UNKNOWN' ? 'CERT_REJECTED' : 'HTTP_STATUS';
    return { ...this.unknown(call, failure, `scanbox backend refused the call (${refusal.code}): ${clip(refusal.text)}`, started, this.origin), refusal: refusal.code };
  }

  private unknown<C extends ApiCall>(call: C, failure: FailureCode, message: string, started: number, origin: string | null, unsent = false): Unknown & { call: C } {
    return { kind: 'unknown', call, failure, message, ms: Math.round(performance.now() - started), origin, ...(unsent ? { unsent: true } : {}) };
  }

  /** One POST to the backend. Never throws for the network or the backend. */
  private async send(
    call: ApiCall,
    body: object,
    started: number,
  ): Promise<{ kind: 'answer'; json: unknown } | { kind: 'refused'; refusal: Refusal } | { kind: 'failed'; outcome: Unknown }> {
    const timeoutMs = this.timeouts[call];
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    let status: number;
    let text: string;
    try {
      const response = await (call === 'downloadbill' ? this.billAgent : this.agent).request({
        origin: this.origin,
        path: `/${PROTOCOL_VERSION}/${call}`,
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(body),
        signal: controller.signal,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      status = response.statusCode;
      text = await response.body.text();
    } catch (error) {
      const codes = errorCodes(error);
      const timedOut = controller.signal.aborted || codes.some((c) => c === 'UND_ERR_HEADERS_TIMEOUT' || c === 'UND_ERR_BODY_TIMEOUT' || c === 'UND_ERR_CONNECT_TIMEOUT');
      // Our own deadline may have cut a request already written: never provably unsent.
      const unsent = !controller.signal.aborted && neverConnected(codes, NEVER_SENT);
      if (codes.includes('UND_ERR_RES_EXCEEDED_MAX_SIZE')) {
        return { kind: 'failed', outcome: this.unknown(call, 'BAD_XML', "the backend's answer is too large", started, this.origin) };
      }
      const failure: FailureCode = timedOut ? 'TIMEOUT' : 'NETWORK';
      const message = timedOut ? `no complete answer from the backend within ${timeoutMs} ms` : `cannot reach the backend: ${codes[0] ?? 'Error'}: ${errorText(error)}`;
      return { kind: 'failed', outcome: this.unknown(call, failure, clip(message, 300), started, null, unsent) };
    } finally {
      clearTimeout(timer);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return { kind: 'failed', outcome: this.unknown(call, status === 200 ? 'BAD_XML' : 'HTTP_STATUS', `HTTP ${status} from the backend, not JSON`, started, this.origin) };
    }
    if (status === 200) return { kind: 'answer', json };
    const refusal = parseRefusal(json);
    // A refusal is believed only as the backend sends it: its code with its own status.
    if (refusal !== null && REFUSAL_STATUS[refusal.code] === status) return { kind: 'refused', refusal };
    return { kind: 'failed', outcome: this.unknown(call, 'HTTP_STATUS', `HTTP ${status} from the backend`, started, this.origin) };
  }

  private logCall(call: ApiCall, outTradeNo: string | null, outcome: ApiOutcome | BillOutcome): void {
    this.log?.debug('backend request', {
      call,
      out_trade_no: outTradeNo ?? undefined,
      origin: this.origin,
      outcome: outcome.kind,
      err_code: outcome.kind === 'business' ? outcome.errCode : undefined,
      failure: outcome.kind === 'unknown' ? outcome.failure : undefined,
      ms: outcome.ms,
    });
  }
}
