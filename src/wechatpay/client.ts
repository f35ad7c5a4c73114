import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { performance } from 'node:perf_hooks';
import { rootCertificates, type ConnectionOptions } from 'node:tls';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { Agent, buildConnector } from 'undici';
import type { Logger } from '../log.js';
import { maskCode } from '../log.js';
import { certificateTlsOptions, type ClientCertificate } from './certificate.js';
import { OUT_REFUND_NO, OUT_REFUND_NO_RULE, OUT_TRADE_NO, OUT_TRADE_NO_RULE } from '../ids.js';
import { SIGN_TYPES, sign, verify, type SignType } from './sign.js';
import { XmlError, decodeXml, encodeXml } from './xml.js';

/**
 * The WeChat Pay V2 HTTPS client for the payment-code cycle: micropay, orderquery, reverse.
 *
 * Money rules that shape this file:
 * - Nothing here throws for a network or gateway problem. Whatever is not a verified answer is an
 *   `unknown` outcome, which the payment cycle resolves by orderquery and reverse. It is never "paid" and
 *   never a definite failure.
 * - micropay is sent exactly once, to one origin. Re-sending it (also to the backup domain) could charge
 *   twice; orderquery and reverse are safe to repeat and fail over to the backup domain.
 * - The payment code and the API key never appear in a message, a log line or an outcome.
 */

export type ApiCall = 'micropay' | 'orderquery' | 'reverse' | 'refund' | 'refundquery' | 'downloadbill';

/** The calls that present the merchant certificate (/secapi/...). */
const CERTIFIED: ReadonlySet<ApiCall> = new Set<ApiCall>(['reverse', 'refund']);

export type FailureCode =
  | 'TIMEOUT'
  | 'NETWORK'
  | 'HTTP_STATUS'
  | 'BAD_XML'
  | 'BAD_SIGNATURE'
  | 'ECHO_MISMATCH'
  | 'RETURN_FAIL'
  | 'CERT_REJECTED'
  /** downloadbill only: an answer that is not a usable bill (too large, not gzip or text, empty). */
  | 'BAD_BILL';

export type ApiOutcome =
  /** return_code=SUCCESS, result_code=SUCCESS, signature verified, echoes checked. */
  | { kind: 'success'; call: ApiCall; fields: Record<string, string>; ms: number; origin: string }
  /** return_code=SUCCESS, result_code=FAIL, signature verified, echoes checked. */
  | {
      kind: 'business';
      call: ApiCall;
      errCode: string;
      errCodeDes: string;
      fields: Record<string, string>;
      ms: number;
      origin: string;
    }
  /**
   * Anything else: never paid, never a final failure. `origin` is who answered, null when nobody did.
   * `unsent` is true only when no byte of the request can have reached WeChat Pay: the connection for it was
   * never made (DNS failure, refused, connect timeout on a fresh connection). Any doubt leaves it false.
   * `refusal`, in merchant-backend mode only (contract §8): the backend refused the call with that code instead
   * of answering it (`BACKEND_UNAVAILABLE` with `unsent`: it sent nothing to WeChat Pay).
   */
  | { kind: 'unknown'; call: ApiCall; failure: FailureCode; message: string; ms: number; origin: string | null; unsent?: boolean; refusal?: string };

/**
 * What an outcome says about whether WeChat Pay can be reached: `unreachable` when nothing answered in time
 * (a network failure or a timeout), `answered` when WeChat Pay itself answered (a verified answer, or one
 * that only WeChat Pay's servers give: a bad signature, return_code=FAIL), `unclear` for the rest (an HTTP
 * error page, garbage, a refused certificate) which may come from anything in between.
 */
export function reachOf(outcome: ApiOutcome): 'unreachable' | 'answered' | 'unclear' {
  if (outcome.kind !== 'unknown') return 'answered';
  if (outcome.failure === 'NETWORK' || outcome.failure === 'TIMEOUT') return 'unreachable';
  if (outcome.failure === 'BAD_SIGNATURE' || outcome.failure === 'RETURN_FAIL') return 'answered';
  return 'unclear';
}

/** One payment as the trade report tells it (the fields of /payitil/report, in the box's words). */
export interface TradeReport {
  /** For a payment-code sale: https://api.mch.weixin.qq.com/pay/micropay/total (the whole cycle). */
  interfaceUrl: string;
  /** From the micropay to the final answer. */
  executeMs: number;
  returnCode: 'SUCCESS' | 'FAIL';
  returnMsg: string;
  resultCode: 'SUCCESS' | 'FAIL';
  errCode?: string;
  errCodeDes?: string;
  deviceInfo?: string;
  outTradeNo: string;
  /** yyyyMMddHHmmss, China time: when the payment began. */
  time: string;
}

/** The report waits at most this long (as the official SDK): a slow report is a lost report. */
const REPORT_TIMEOUT_MS = 1000;

export interface MerchantCredentials {
  mchId: string;
  appId: string;
  subMchId?: string;
  subAppId?: string;
  apiKey: string;
  signType: SignType;
}

export interface WechatPayClientOptions {
  merchant: MerchantCredentials;
  /** Origin (optionally with a path prefix such as `/sandboxnew`), e.g. https://api.mch.weixin.qq.com */
  apiBase: string;
  /** e.g. https://api2.mch.weixin.qq.com; used by orderquery and reverse when the primary cannot be reached. */
  backupBase?: string | null;
  /** The merchant client certificate; /secapi/pay/reverse refuses requests without it. */
  certificate?: ClientCertificate | null;
  /** Extra trust anchors (tests, simulator), added to Node's bundled roots. */
  ca?: string | string[];
  /** Per call, in ms: micropay 10000, orderquery 6000, reverse 8000, downloadbill 30000; connect 5000. */
  timeouts?: Partial<Record<ApiCall, number>> & { connect?: number };
  /** Default: the first non-internal IPv4 address of this machine, else 127.0.0.1. */
  spbillCreateIp?: string;
  log?: Logger;
  /** Default: 32 characters of [A-Za-z0-9] from crypto.randomBytes. */
  nonce?: () => string;
  /** test/bench hook: called right before a request is written and right after its body is read. */
  onWire?: (call: ApiCall, phase: 'send' | 'receive') => void;
  /**
   * Connections per origin for micropay and orderquery; default 1 (a box: one sale at a time). The merchant
   * backend serves many boxes at once and keeps a pool (SCANBOX_BACKEND_UPSTREAM_CONNECTIONS); while warm, a
   * spare connection stands ready whenever the pool may grow, so a new connection is not handshaken on a
   * sale's path.
   */
  payConnections?: number;
}

const DEFAULT_TIMEOUTS: Readonly<Record<ApiCall | 'connect', number>> = {
  micropay: 10_000,
  orderquery: 6_000,
  reverse: 8_000,
  // The register waits about 10 s for a refund's answer: one refund, then a refundquery if it is unknown.
  refund: 6_000,
  refundquery: 4_000,
  // A bill is megabytes, fetched once a day away from the counter's sales.
  downloadbill: 30_000,
  connect: 5_000,
};

const PATHS: Readonly<Record<ApiCall, string>> = {
  micropay: '/pay/micropay',
  orderquery: '/pay/orderquery',
  reverse: '/secapi/pay/reverse',
  refund: '/secapi/pay/refund',
  refundquery: '/pay/refundquery',
  downloadbill: '/pay/downloadbill',
};

/** A V2 answer is a few hundred bytes; anything near this is not WeChat Pay. */
const MAX_RESPONSE_BYTES = 256 * 1024;

/**
 * The most a bill may take, as received and once unzipped: about 200 bytes a trade row, so some 300,000
 * trades of one merchant in one day, far past what a shop's boxes sell.
 */
export const MAX_BILL_BYTES = 64 * 1024 * 1024;

/** A downloadbill failure is a short XML; a longer one is not WeChat Pay's. */
const MAX_BILL_FAILURE_CHARS = 64 * 1024;

export type BillType = 'ALL' | 'SUCCESS' | 'REFUND';
const BILL_TYPES: readonly BillType[] = ['ALL', 'SUCCESS', 'REFUND'];

/**
 * What downloadbill got. The bill is neither XML nor signed, so nothing in it is verified here: it is text for
 * the bill parser (wechatpay/bill.ts), gunzipped when WeChat Pay sent gzip.
 */
export type BillOutcome =
  /** The bill's text, as sent (a byte-order mark included); `bytes` as received, `gzip` when it came zipped. */
  | { kind: 'bill'; call: 'downloadbill'; text: string; bytes: number; gzip: boolean; ms: number; origin: string }
  /** return_msg `No Bill Exist`: the merchant had no trade that day. */
  | { kind: 'no_bill'; call: 'downloadbill'; message: string; ms: number; origin: string }
  /** return_msg `Bill Creating`: not generated yet (from 09:00 China time the next day; fetch after 10:00). */
  | { kind: 'not_ready'; call: 'downloadbill'; message: string; ms: number; origin: string }
  /** Anything else, as for the other calls: SYSTEMERROR and other return_msg are RETURN_FAIL. */
  | (Extract<ApiOutcome, { kind: 'unknown' }> & { call: 'downloadbill' });

const gunzipAsync = promisify(gunzip);

/**
 * How long an idle connection is kept. Sales at a counter come in bursts (micropay, then orderquery
 * every 5 s); reusing the TLS connection saves a handshake per request. Kept well under nginx's default
 * 75 s so the box rarely writes into a connection the server has just closed (undici uses the server's
 * Keep-Alive hint instead when it sends one).
 */
const KEEP_ALIVE_MS = 20_000;

const NONCE_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** 32 characters of [A-Za-z0-9]; bytes >= 248 are skipped so every character is equally likely. */
export function randomNonce(length = 32): string {
  let out = '';
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte >= 248) continue;
      out += NONCE_ALPHABET[byte % 62];
      if (out.length === length) break;
    }
  }
  return out;
}

/** The IP WeChat Pay asks for in spbill_create_ip: this machine's first non-internal IPv4 address. */
export function defaultSpbillCreateIp(): string {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const address of addresses ?? []) {
      if (address.family === 'IPv4' && !address.internal) return address.address;
    }
  }
  return '127.0.0.1';
}

/**
 * An API origin, optionally with a path prefix (`https://host/sandboxnew`), as `origin + path` without a
 * trailing slash; or what is wrong with it. SCANBOX_API_BASE and SCANBOX_API_BACKUP_BASE are read with this.
 */
export function parseApiBase(value: string): { ok: true; base: string } | { ok: false; problem: string } {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return { ok: false, problem: 'is not a URL' };
  }
  // The payment code travels in the request body: never over plain HTTP.
  if (url.protocol !== 'https:') return { ok: false, problem: 'must be an https:// URL' };
  if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    return { ok: false, problem: 'must be an origin with at most a path prefix (e.g. https://host/sandboxnew)' };
  }
  return { ok: true, base: url.origin + url.pathname.replace(/\/+$/, '') };
}

function normalizeBase(name: string, base: string): string {
  const parsed = parseApiBase(base);
  if (!parsed.ok) throw new TypeError(`${name} ${parsed.problem}: ${base}`);
  return parsed.base;
}

function positiveMs(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) throw new TypeError(`timeouts.${name} must be a positive number of ms`);
  return Math.ceil(value);
}

function requireText(name: string, value: unknown): string {
  if (typeof value !== 'string' || value === '') throw new TypeError(`merchant.${name} must be a non-empty string`);
  return value;
}

/** Every error code an undici/Node failure carries, including inside AggregateError (happy eyeballs) and causes. */
export function errorCodes(error: unknown, depth = 0): string[] {
  if (typeof error !== 'object' || error === null || depth > 3) return [];
  const codes: string[] = [];
  const { code, cause, errors } = error as { code?: unknown; cause?: unknown; errors?: unknown };
  if (typeof code === 'string') codes.push(code);
  if (cause !== undefined) codes.push(...errorCodes(cause, depth + 1));
  if (Array.isArray(errors)) for (const inner of errors) codes.push(...errorCodes(inner, depth + 1));
  return codes;
}

export function errorText(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error && error.cause.message !== error.message ? ` (${error.cause.message})` : '';
  const inner =
    error instanceof AggregateError && error.message === '' ? error.errors.map((e) => errorText(e)).join('; ') : error.message;
  return inner + cause;
}

/** Failures in reaching the server at all (the request never left the box); named as such in the message. */
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EADDRNOTAVAIL',
  'ETIMEDOUT',
  'UND_ERR_CONNECT_TIMEOUT',
]);

interface Failure {
  failure: FailureCode;
  message: string;
  /** true when the backup domain may be tried (orderquery and reverse only). */
  failover: boolean;
  /** true only when the connection for the request was never made: no byte of it can have left the box. */
  unsent: boolean;
}

/**
 * Errors that only making a new connection can raise: a name that does not resolve, a refused or unreachable
 * address, undici's connect timeout. A request is written only on a connection that was made, so with one of
 * these nothing of it left the box. ETIMEDOUT is not here: the kernel also reports it on an established
 * connection whose writes went unanswered, which may have carried the request.
 */
export const NEVER_CONNECTED: ReadonlySet<string> = new Set([
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EADDRNOTAVAIL',
  'UND_ERR_CONNECT_TIMEOUT',
  // Node's own limit on one address's attempt when it tries several (happy eyeballs).
  'ERR_SOCKET_CONNECTION_TIMEOUT',
]);

/** Every code of the failure is one that only connecting raises (and there is at least one). */
export function neverConnected(codes: readonly string[], known: ReadonlySet<string> = NEVER_CONNECTED): boolean {
  return codes.length > 0 && codes.every((code) => known.has(code));
}

function classifyError(error: unknown, timedOut: boolean, timeoutMs: number): Failure {
  const codes = errorCodes(error);
  const text = errorText(error);
  const first = codes[0] ?? (error instanceof Error ? error.name : 'Error');
  // Our own deadline may have cut a connection attempt or a written request: never provably unsent.
  const unsent = !timedOut && neverConnected(codes);
  if (codes.includes('UND_ERR_CONNECT_TIMEOUT')) {
    return { failure: 'TIMEOUT', message: `could not connect in time: ${text}`, failover: true, unsent };
  }
  if (timedOut || codes.includes('UND_ERR_HEADERS_TIMEOUT') || codes.includes('UND_ERR_BODY_TIMEOUT')) {
    return { failure: 'TIMEOUT', message: `no complete answer within ${timeoutMs} ms`, failover: false, unsent: false };
  }
  if (codes.includes('UND_ERR_RES_EXCEEDED_MAX_SIZE')) {
    return { failure: 'BAD_XML', message: `answer larger than ${MAX_RESPONSE_BYTES} bytes`, failover: false, unsent: false };
  }
  const unreachable = codes.some((code) => UNREACHABLE.has(code));
  // Refused, DNS, unreachable, and also a reset, a TLS failure or a closed socket (which may come after the
  // server got the request): orderquery and reverse are safe to repeat, so the backup is asked for all of them.
  // A read timeout is not failed over: the call's time is used up and the primary may still be working on it.
  return { failure: 'NETWORK', message: `${unreachable ? 'cannot reach server' : 'connection failed'}: ${first}: ${text}`, failover: true, unsent };
}

type Judged = { outcome: ApiOutcome; failover: boolean };

/**
 * One live TLS connection to the API origin kept ready while a sale is open, so that neither its micropay nor
 * the queries of the password wait pay a TCP + TLS handshake while the customer waits (WeChat Pay closes idle
 * connections after about 8 s, and sales at a counter are minutes apart). It is opened through the pool's own
 * connector (so it resumes the pool's TLS session) only when the pool has no connection, handed to the pool
 * when it next needs one, and opened again when the server closes it before it is used. No API request is
 * ever sent just to keep a connection open.
 */
class SpareConnection {
  readonly stats = { opened: 0, used: 0 };
  private socket: buildConnector.CallbackArgs[1] | null = null;
  private opening = false;
  private wanted = false;

  constructor(
    private readonly connect: buildConnector.connector,
    private readonly target: Parameters<buildConnector.connector>[0],
    private readonly poolConnected: () => boolean,
    private readonly log: Logger | undefined,
  ) {}

  want(on: boolean): void {
    this.wanted = on;
    if (on) this.ensure();
    else {
      const idle = this.socket;
      this.socket = null;
      idle?.destroy();
    }
  }

  /** Opens a spare when one is wanted and neither the pool nor a spare has a live connection. */
  ensure(): void {
    if (!this.wanted || this.socket !== null || this.opening || this.poolConnected()) return;
    this.opening = true;
    this.connect(this.target, (error, socket) => {
      this.opening = false;
      if (error !== null || !socket) {
        // The request itself will try; a refused or unresolvable origin is then proven by its own attempt.
        this.log?.debug('could not open a spare connection to WeChat Pay', { error: errorText(error) });
        return;
      }
      if (!this.wanted) {
        socket.destroy();
        return;
      }
      this.stats.opened += 1;
      this.socket = socket;
      socket.on('error', () => undefined);
      socket.once('close', () => {
        if (this.socket !== socket) return;
        this.socket = null;
        this.ensure();
      });
    });
  }

  /** The spare for a request of the pool's origin, when it is still open. */
  take(): buildConnector.CallbackArgs[1] | null {
    const socket = this.socket;
    this.socket = null;
    if (!socket || socket.destroyed || !socket.writable) return null;
    socket.removeAllListeners('close');
    socket.removeAllListeners('error');
    this.stats.used += 1;
    return socket;
  }
}

export class WechatPayClient {
  /**
   * handshakes: TLS connections a request had to wait for; warmed: spare connections opened ahead of a sale's
   * requests (off the customer's time); resumed: connections (of either kind) that resumed a TLS session.
   */
  readonly stats = { handshakes: 0, requests: 0, warmed: 0, resumed: 0 };

  private readonly merchant: Readonly<MerchantCredentials>;
  private readonly apiBase: string;
  private readonly backupBase: string | null;
  private readonly timeouts: Readonly<Record<ApiCall | 'connect', number>>;
  private readonly spbillCreateIp: string;
  private readonly log: Logger | undefined;
  private readonly nonce: () => string;
  private readonly onWire: ((call: ApiCall, phase: 'send' | 'receive') => void) | undefined;
  /** Connections of payAgent per origin (options.payConnections). */
  private readonly payConnections: number;
  /** micropay and orderquery: one keep-alive pool per origin, no client certificate. */
  private readonly payAgent: Agent;
  /** reverse only: presents the merchant certificate on every connection. */
  private readonly secAgent: Agent;
  /** downloadbill only: no certificate, a larger answer cap. */
  private readonly billAgent: Agent;
  /** The trade report only: never in the way of a sale's connection; destroyed, not drained, at close. */
  private readonly reportAgent: Agent;
  private closing: Promise<void> | undefined;
  /** The spare connection of payAgent (micropay and orderquery go to the primary origin). */
  private readonly spare: SpareConnection;

  constructor(options: WechatPayClientOptions) {
    const m = options.merchant;
    if (typeof m !== 'object' || m === null) throw new TypeError('merchant credentials are required');
    this.merchant = Object.freeze({
      mchId: requireText('mchId', m.mchId),
      appId: requireText('appId', m.appId),
      ...(m.subMchId ? { subMchId: m.subMchId } : {}),
      ...(m.subAppId ? { subAppId: m.subAppId } : {}),
      apiKey: requireText('apiKey', m.apiKey),
      signType: m.signType,
    });
    if (!SIGN_TYPES.includes(m.signType)) throw new TypeError(`merchant.signType must be one of ${SIGN_TYPES.join(', ')}`);
    this.apiBase = normalizeBase('apiBase', options.apiBase);
    this.backupBase = options.backupBase ? normalizeBase('backupBase', options.backupBase) : null;
    const t = options.timeouts ?? {};
    this.timeouts = Object.freeze({
      micropay: positiveMs('micropay', t.micropay, DEFAULT_TIMEOUTS.micropay),
      orderquery: positiveMs('orderquery', t.orderquery, DEFAULT_TIMEOUTS.orderquery),
      reverse: positiveMs('reverse', t.reverse, DEFAULT_TIMEOUTS.reverse),
      refund: positiveMs('refund', t.refund, DEFAULT_TIMEOUTS.refund),
      refundquery: positiveMs('refundquery', t.refundquery, DEFAULT_TIMEOUTS.refundquery),
      downloadbill: positiveMs('downloadbill', t.downloadbill, DEFAULT_TIMEOUTS.downloadbill),
      connect: positiveMs('connect', t.connect, DEFAULT_TIMEOUTS.connect),
    });
    this.spbillCreateIp = options.spbillCreateIp ?? defaultSpbillCreateIp();
    this.log = options.log;
    this.nonce = options.nonce ?? (() => randomNonce());
    this.onWire = options.onWire;

    const pool = options.payConnections ?? 1;
    if (!Number.isSafeInteger(pool) || pool < 1 || pool > 1024) throw new TypeError('payConnections must be a whole number 1..1024');
    this.payConnections = pool;
    const certificate = options.certificate ? certificateTlsOptions(options.certificate) : {};
    // Node's `ca` replaces the default roots; extra anchors are added to them instead.
    const extraCa = options.ca === undefined ? [] : Array.isArray(options.ca) ? options.ca : [options.ca];
    const trust: ConnectionOptions = extraCa.length > 0 ? { ca: [...rootCertificates, ...extraCa] } : {};
    // One connection per origin for micropay and orderquery: a sale's requests are sequential, and undici
    // checks an idle socket for a FIN in the next event-loop turn before reusing it; with more connections
    // allowed, a request sent right after the previous answer would open a second TLS connection instead.
    const primary = new URL(this.apiBase);
    const payConnect = buildConnector({ ...trust, timeout: this.timeouts.connect });
    this.spare = new SpareConnection(
      (target, callback) =>
        payConnect(target, (...args: buildConnector.CallbackArgs) => {
          if (args[0] === null) {
            this.stats.warmed += 1;
            if ((args[1] as { isSessionReused?: () => boolean }).isSessionReused?.()) this.stats.resumed += 1;
          }
          callback(...args);
        }),
      {
        hostname: primary.hostname,
        host: primary.host,
        protocol: primary.protocol,
        port: primary.port === '' ? '443' : primary.port,
        servername: isIP(primary.hostname.replace(/^\[(.*)\]$/, '$1')) === 0 ? primary.hostname : '',
      } as Parameters<buildConnector.connector>[0],
      () => {
        // A Client (one connection) says connected as a boolean, a Pool as a count. Full: no spare needed.
        const connected: unknown = this.payAgent.stats[primary.origin]?.connected;
        const count = connected === true ? 1 : typeof connected === 'number' ? connected : 0;
        return count >= this.payConnections;
      },
      this.log,
    );
    this.payAgent = this.agent(trust, this.payConnections, MAX_RESPONSE_BYTES, { connect: payConnect, spareFor: primary.origin });
    // A sale open while the pool lost its connection (the server closed it when idle): another spare.
    this.payAgent.on('disconnect', () => this.spare.ensure());
    this.secAgent = this.agent({ ...trust, ...certificate }, null);
    // downloadbill: a pool of its own, so that a bill of megabytes neither meets the answer cap of the other
    // calls nor holds the sales' one connection for seconds.
    this.billAgent = this.agent(trust, 1, MAX_BILL_BYTES);
    this.reportAgent = this.agent(trust, 1);
  }

  private agent(
    tlsOptions: ConnectionOptions,
    connections: number | null,
    maxResponseSize = MAX_RESPONSE_BYTES,
    own?: { connect: buildConnector.connector; spareFor: string },
  ): Agent {
    const connect = own?.connect ?? buildConnector({ ...tlsOptions, timeout: this.timeouts.connect });
    const counted: buildConnector.connector = (opts, callback) => {
      if (own && `${opts.protocol}//${opts.host}` === own.spareFor) {
        const ready = this.spare.take();
        // Never synchronously: undici's client ignores a connection handed to it while it is still asking.
        if (ready) {
          // A pool that may grow further gets its next spare (a one-connection pool is full now: none).
          if (this.payConnections > 1) setImmediate(() => this.spare.ensure());
          return void queueMicrotask(() => callback(null, ready));
        }
      }
      connect(opts, (...args: buildConnector.CallbackArgs) => {
        if (args[0] === null) {
          this.stats.handshakes += 1;
          if ((args[1] as { isSessionReused?: () => boolean }).isSessionReused?.()) this.stats.resumed += 1;
        }
        callback(...args);
      });
    };
    return new Agent({
      connect: counted,
      keepAliveTimeout: KEEP_ALIVE_MS,
      keepAliveMaxTimeout: 60_000,
      maxResponseSize,
      pipelining: 1,
      connections,
    });
  }

  micropay(req: {
    outTradeNo: string;
    totalFee: number;
    authCode: string;
    body: string;
    deviceInfo?: string;
    attach?: string;
  }): Promise<ApiOutcome> {
    checkOutTradeNo(req.outTradeNo);
    if (typeof req.totalFee !== 'number' || !Number.isSafeInteger(req.totalFee) || req.totalFee <= 0) {
      throw new TypeError('totalFee must be a positive safe integer number of fen');
    }
    if (typeof req.authCode !== 'string' || req.authCode === '') throw new TypeError('authCode must be a non-empty string');
    if (typeof req.body !== 'string' || req.body === '') throw new TypeError('body must be a non-empty string');
    const fields: Record<string, string> = {
      body: req.body,
      out_trade_no: req.outTradeNo,
      total_fee: String(req.totalFee),
      spbill_create_ip: this.spbillCreateIp,
      auth_code: req.authCode,
    };
    if (req.deviceInfo) fields.device_info = req.deviceInfo;
    if (req.attach) fields.attach = req.attach;
    return this.call('micropay', req.outTradeNo, fields, req.authCode);
  }

  orderquery(req: { outTradeNo: string }): Promise<ApiOutcome> {
    checkOutTradeNo(req.outTradeNo);
    return this.call('orderquery', req.outTradeNo, { out_trade_no: req.outTradeNo }, null);
  }

  reverse(req: { outTradeNo: string }): Promise<ApiOutcome> {
    checkOutTradeNo(req.outTradeNo);
    return this.call('reverse', req.outTradeNo, { out_trade_no: req.outTradeNo }, null);
  }

  /**
   * A refund of `refundFee` fen of the order `outTradeNo` (whose amount is `totalFee`), under the merchant's
   * refund number `outRefundNo`. Sent again with the same number after any unknown outcome: one number refunds
   * at most once at WeChat Pay, so a retry is safe, and a new number for the same intent is not.
   */
  refund(req: { outTradeNo: string; outRefundNo: string; totalFee: number; refundFee: number; refundDesc?: string }): Promise<ApiOutcome> {
    checkOutTradeNo(req.outTradeNo);
    checkOutRefundNo(req.outRefundNo);
    checkFen('totalFee', req.totalFee);
    checkFen('refundFee', req.refundFee);
    if (req.refundFee > req.totalFee) throw new TypeError('refundFee must not exceed totalFee');
    const fields: Record<string, string> = {
      out_trade_no: req.outTradeNo,
      out_refund_no: req.outRefundNo,
      total_fee: String(req.totalFee),
      refund_fee: String(req.refundFee),
    };
    if (req.refundDesc) fields.refund_desc = req.refundDesc;
    return this.call('refund', req.outTradeNo, fields, null);
  }

  /** Where a refund stands, by the merchant's refund number: the answer lists it as `out_refund_no_$n` and its fields. */
  refundquery(req: { outRefundNo: string }): Promise<ApiOutcome> {
    checkOutRefundNo(req.outRefundNo);
    return this.call('refundquery', null, { out_refund_no: req.outRefundNo }, null);
  }

  /**
   * The merchant's bill of `billDate` (yyyyMMdd, a China-time day): every box of the merchant, from 09:00 China
   * time the next day, for the last 3 months (after-the-sale.md §3). Safe to repeat, so it fails over to the
   * backup domain like orderquery. Never throws for a network or gateway problem.
   */
  /** `signal`: abandons the download (an `unknown` TIMEOUT outcome), as when nobody waits for the bill any more. */
  downloadbill(req: { billDate: string; billType?: BillType; gzip?: boolean; signal?: AbortSignal }): Promise<BillOutcome> {
    checkBillDate(req.billDate);
    const billType = req.billType ?? 'ALL';
    if (!BILL_TYPES.includes(billType)) throw new TypeError(`billType must be one of ${BILL_TYPES.join(', ')}`);
    if (req.gzip !== undefined && typeof req.gzip !== 'boolean') throw new TypeError('gzip must be a boolean');
    return this.fetchBill(req.billDate, billType, req.gzip === true, req.signal);
  }

  private async fetchBill(billDate: string, billType: BillType, gzip: boolean, signal?: AbortSignal): Promise<BillOutcome> {
    const started = performance.now();
    const scrub = scrubber(null, this.merchant.apiKey);
    let outcome: BillOutcome;
    try {
      const fields: Record<string, string> = { bill_date: billDate, bill_type: billType };
      if (gzip) fields.tar_type = 'GZIP';
      const body = this.signedBody(fields);
      const bases = this.backupBase !== null ? [this.apiBase, this.backupBase] : [this.apiBase];
      let attempt: { outcome: BillOutcome; failover: boolean } | undefined;
      for (const base of bases) {
        const attemptStarted = performance.now();
        attempt = await this.attemptBill(base, body, started, signal);
        this.logBill(billDate, base, attempt.outcome, attemptStarted);
        if (!attempt.failover || signal?.aborted) break;
      }
      outcome = attempt!.outcome;
    } catch (error) {
      outcome = { kind: 'unknown', call: 'downloadbill', failure: 'NETWORK', message: `internal error: ${errorText(error)}`, ms: elapsed(started), origin: null };
      this.logBill(billDate, this.apiBase, outcome, started);
    }
    // The bill's own text is not scrubbed: it is WeChat Pay's, megabytes long, and holds no key.
    return outcome.kind === 'bill' ? outcome : { ...outcome, message: scrub(outcome.message) };
  }

  /**
   * WeChat Pay's trade report (交易保障, after-the-sale.md §4): how one payment went, for WeChat Pay to watch the
   * quality of the merchant's link. Off the sale's path: on its own connection, 1 s at most, never retried,
   * never failed over, never thrown; resolves with whether WeChat Pay took it.
   */
  async tradeReport(report: TradeReport): Promise<{ ok: boolean; message: string }> {
    if (this.closing) return { ok: false, message: 'client closing' };
    const started = performance.now();
    try {
      const body = this.signedBody({
        interface_url: report.interfaceUrl,
        execute_time_: String(Math.max(0, Math.round(report.executeMs))),
        return_code: report.returnCode,
        return_msg: report.returnMsg,
        result_code: report.resultCode,
        ...(report.errCode ? { err_code: report.errCode } : {}),
        ...(report.errCodeDes ? { err_code_des: report.errCodeDes } : {}),
        ...(report.deviceInfo ? { device_info: report.deviceInfo } : {}),
        out_trade_no: report.outTradeNo,
        user_ip: this.spbillCreateIp,
        time: report.time,
      });
      const url = new URL(this.apiBase + '/payitil/report');
      const response = await this.reportAgent.request({
        origin: url.origin,
        path: url.pathname,
        method: 'POST',
        headers: { 'content-type': 'text/xml; charset=utf-8' },
        body,
        signal: AbortSignal.timeout(REPORT_TIMEOUT_MS),
        headersTimeout: REPORT_TIMEOUT_MS,
        bodyTimeout: REPORT_TIMEOUT_MS,
      });
      const text = await response.body.text();
      const fields = response.statusCode === 200 ? decodeXml(text) : {};
      const ok = fields.return_code === 'SUCCESS';
      return { ok, message: ok ? `taken in ${elapsed(started)} ms` : `HTTP ${response.statusCode} return_code=${clip(fields.return_code ?? '(none)')}` };
    } catch (error) {
      return { ok: false, message: clip(scrubber(null, this.merchant.apiKey)(errorText(error))) };
    }
  }

  /**
   * A sale is open: keep a live connection to the API origin ready for its micropay and for the queries of the
   * password wait, opening one now if the pool has none, and again whenever the server closes it.
   */
  warm(): void {
    if (this.closing) return;
    this.spare.want(true);
  }

  /** The sale is over: no more spare connections (the pool keeps what it has as long as the server allows). */
  cool(): void {
    this.spare.want(false);
  }

  /** Closes the connections once the requests under way have finished. Safe to call more than once. */
  close(): Promise<void> {
    this.spare.want(false);
    // A report still under way is dropped: it must never hold up a shutdown.
    this.closing ??= Promise.all([this.payAgent.close(), this.secAgent.close(), this.billAgent.close(), this.reportAgent.destroy()]).then(
      () => undefined,
    );
    return this.closing;
  }

  private signedBody(callFields: Record<string, string>): string {
    const m = this.merchant;
    const nonce = this.nonce();
    if (typeof nonce !== 'string' || !/^[A-Za-z0-9]{1,32}$/.test(nonce)) throw new TypeError('nonce() must return 1-32 of [A-Za-z0-9]');
    const fields: Record<string, string> = { appid: m.appId, mch_id: m.mchId };
    if (m.subAppId) fields.sub_appid = m.subAppId;
    if (m.subMchId) fields.sub_mch_id = m.subMchId;
    fields.nonce_str = nonce;
    // sign_type is an ordinary signed field: it is in the map before the signature is computed.
    fields.sign_type = m.signType;
    Object.assign(fields, callFields);
    fields.sign = sign(fields, m.apiKey, m.signType);
    return encodeXml(fields);
  }

  private async call(
    call: ApiCall,
    outTradeNo: string | null,
    callFields: Record<string, string>,
    authCode: string | null,
  ): Promise<ApiOutcome> {
    const started = performance.now();
    const scrub = scrubber(authCode, this.merchant.apiKey);
    let outcome: ApiOutcome;
    try {
      const body = this.signedBody(callFields);
      // micropay goes to one origin only: a second micropay anywhere could charge twice.
      const bases = call !== 'micropay' && this.backupBase !== null ? [this.apiBase, this.backupBase] : [this.apiBase];
      let judged: Judged | undefined;
      for (const base of bases) {
        const attemptStarted = performance.now();
        judged = await this.attempt(call, base, body, outTradeNo, started);
        this.logAttempt(call, outTradeNo, base, judged.outcome, attemptStarted);
        if (!judged.failover) break;
      }
      outcome = judged!.outcome;
    } catch (error) {
      // Nothing above should throw; if it does, the money rule still holds: not paid, not failed, unknown.
      outcome = {
        kind: 'unknown',
        call,
        failure: 'NETWORK',
        message: `internal error: ${errorText(error)}`,
        ms: elapsed(started),
        origin: null,
      };
      this.logAttempt(call, outTradeNo, this.apiBase, outcome, started);
    }
    return scrubOutcome(outcome, scrub);
  }

  private logAttempt(call: ApiCall, outTradeNo: string | null, base: string, outcome: ApiOutcome, started: number): void {
    this.log?.debug('wechatpay request', {
      call,
      out_trade_no: outTradeNo ?? undefined,
      origin: base,
      outcome: outcome.kind,
      err_code: outcome.kind === 'business' ? outcome.errCode : undefined,
      failure: outcome.kind === 'unknown' ? outcome.failure : undefined,
      ms: elapsed(started),
    });
  }

  /** One request to one origin. Never throws. */
  private async attempt(call: ApiCall, base: string, body: string, outTradeNo: string | null, started: number): Promise<Judged> {
    const timeoutMs = this.timeouts[call];
    const url = new URL(base + PATHS[call]);
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    const dispatcher = CERTIFIED.has(call) ? this.secAgent : this.payAgent;
    let status: number;
    let text: string;
    try {
      this.stats.requests += 1;
      this.onWire?.(call, 'send');
      const response = await dispatcher.request({
        origin: url.origin,
        path: url.pathname,
        method: 'POST',
        headers: { 'content-type': 'text/xml; charset=utf-8', accept: 'text/xml, application/xml' },
        body,
        signal: controller.signal,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      status = response.statusCode;
      text = await response.body.text();
      this.onWire?.(call, 'receive');
    } catch (error) {
      const failed = classifyError(error, controller.signal.aborted, timeoutMs);
      return {
        outcome: {
          kind: 'unknown',
          call,
          failure: failed.failure,
          message: failed.message,
          ms: elapsed(started),
          origin: null,
          ...(failed.unsent ? { unsent: true } : {}),
        },
        failover: failed.failover,
      };
    } finally {
      clearTimeout(timer);
    }
    return { outcome: this.judge(call, base, status, text, outTradeNo, started), failover: false };
  }

  private logBill(billDate: string, base: string, outcome: BillOutcome, started: number): void {
    this.log?.debug('wechatpay request', {
      call: 'downloadbill',
      bill_date: billDate,
      origin: base,
      outcome: outcome.kind,
      failure: outcome.kind === 'unknown' ? outcome.failure : undefined,
      bytes: outcome.kind === 'bill' ? outcome.bytes : undefined,
      ms: elapsed(started),
    });
  }

  /** One downloadbill request to one origin. Never throws. */
  private async attemptBill(base: string, body: string, started: number, signal?: AbortSignal): Promise<{ outcome: BillOutcome; failover: boolean }> {
    const call = 'downloadbill';
    const timeoutMs = this.timeouts.downloadbill;
    const url = new URL(base + PATHS.downloadbill);
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    const abandon = (): void => controller.abort();
    if (signal?.aborted) controller.abort();
    signal?.addEventListener('abort', abandon, { once: true });
    let status: number;
    let bytes: Buffer;
    try {
      this.stats.requests += 1;
      this.onWire?.(call, 'send');
      const response = await this.billAgent.request({
        origin: url.origin,
        path: url.pathname,
        method: 'POST',
        headers: { 'content-type': 'text/xml; charset=utf-8', accept: 'text/plain, application/octet-stream, text/xml' },
        body,
        signal: controller.signal,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      status = response.statusCode;
      const declared = Number(response.headers['content-length']);
      if (declared > MAX_BILL_BYTES) {
        // Refused from the declared length, before megabytes arrive; the connection is not reused.
        response.body.destroy();
        return { outcome: { kind: 'unknown', call, failure: 'BAD_BILL', message: `bill larger than ${MAX_BILL_BYTES} bytes (${declared} declared)`, ms: elapsed(started), origin: base }, failover: false };
      }
      bytes = Buffer.from(await response.body.arrayBuffer());
      this.onWire?.(call, 'receive');
    } catch (error) {
      if (errorCodes(error).includes('UND_ERR_RES_EXCEEDED_MAX_SIZE')) {
        return { outcome: { kind: 'unknown', call, failure: 'BAD_BILL', message: `bill larger than ${MAX_BILL_BYTES} bytes`, ms: elapsed(started), origin: base }, failover: false };
      }
      const failed = classifyError(error, controller.signal.aborted, timeoutMs);
      return { outcome: { kind: 'unknown', call, failure: failed.failure, message: failed.message, ms: elapsed(started), origin: null }, failover: failed.failover };
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', abandon);
    }
    return { outcome: await this.judgeBill(base, status, bytes, started), failover: false };
  }

  /**
   * A bill or a failure, told apart by content: the success body is the bill (text or gzip, never XML, never
   * signed), a failure is XML with return_code=FAIL. Gzip is recognised by its magic bytes, which UTF-8 text
   * cannot begin with, so a bill is read whether or not it came zipped as asked.
   */
  private async judgeBill(origin: string, status: number, bytes: Buffer, started: number): Promise<BillOutcome> {
    const call = 'downloadbill';
    const unknown = (failure: FailureCode, message: string): BillOutcome => ({ kind: 'unknown', call, failure, message, ms: elapsed(started), origin });
    if (status !== 200) return unknown('HTTP_STATUS', `HTTP ${status} from ${origin}${PATHS.downloadbill}`);
    const gzip = bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
    let raw = bytes;
    if (gzip) {
      try {
        raw = await gunzipAsync(bytes, { maxOutputLength: MAX_BILL_BYTES });
      } catch (error) {
        if (errorCodes(error).includes('ERR_BUFFER_TOO_LARGE')) return unknown('BAD_BILL', `bill larger than ${MAX_BILL_BYTES} bytes once unzipped`);
        return unknown('BAD_BILL', `the gzip answer does not unzip: ${clip(errorText(error))}`);
      }
    }
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(raw);
    } catch {
      return unknown('BAD_BILL', `the answer is not UTF-8 text (${raw.length} bytes${gzip ? ' unzipped' : ''})`);
    }
    const head = text.slice(0, 512).replace(/^\uFEFF/, '').trimStart();
    if (head.startsWith('<')) {
      if (text.length > MAX_BILL_FAILURE_CHARS) return unknown('BAD_XML', `an XML answer of ${text.length} characters: not a downloadbill failure`);
      let fields: Record<string, string>;
      try {
        fields = decodeXml(text.replace(/^\uFEFF/, ''));
      } catch (error) {
        if (error instanceof XmlError) return unknown('BAD_XML', error.message);
        throw error;
      }
      const returnMsg = fields.return_msg ?? '';
      if (fields.return_code !== 'FAIL') {
        return unknown('BAD_XML', `an XML answer with return_code=${clip(fields.return_code ?? '(none)')}: a bill is never XML`);
      }
      const said = returnMsg.trim().toLowerCase();
      // error_code (not err_code) is what real failures carry: 20002 with No Bill Exist, 20001 with invalid
      // bill_date (a day WeChat Pay does not have a bill for: in the future, or past its 3 months).
      const errorCodeText = (fields.error_code ?? '').trim();
      if (said === 'no bill exist' || (errorCodeText === '20002' && said === '')) return { kind: 'no_bill', call, message: clip(returnMsg), ms: elapsed(started), origin };
      if (said === 'bill creating') return { kind: 'not_ready', call, message: clip(returnMsg), ms: elapsed(started), origin };
      const errorCode = fields.error_code ? ` error_code=${clip(fields.error_code)}` : '';
      return unknown('RETURN_FAIL', `return_code=FAIL return_msg=${clip(returnMsg)}${errorCode}`);
    }
    if (head === '') return unknown('BAD_BILL', 'an empty answer');
    return { kind: 'bill', call, text, bytes: bytes.length, gzip, ms: elapsed(started), origin };
  }

  /** The response checks, in the order the money rules need them. */
  private judge(call: ApiCall, origin: string, status: number, text: string, outTradeNo: string | null, started: number): ApiOutcome {
    const unknown = (failure: FailureCode, message: string): ApiOutcome => ({
      kind: 'unknown',
      call,
      failure,
      message,
      ms: elapsed(started),
      origin,
    });
    if (status !== 200) {
      if (CERTIFIED.has(call) && /SSL certificate/i.test(text)) {
        const said = /No required SSL certificate was sent|The SSL certificate error|[^<>]*SSL certificate[^<>]*/i.exec(text)?.[0]?.trim();
        return unknown(
          'CERT_REJECTED',
          `WeChat Pay refused the merchant certificate (HTTP ${status}: ${clip(said ?? 'SSL certificate')}): ` +
            'check the merchant certificate (SCANBOX_CERT_FILE/SCANBOX_CERT_KEY_FILE or SCANBOX_CERT_P12_FILE)',
        );
      }
      return unknown('HTTP_STATUS', `HTTP ${status} from ${origin}${PATHS[call]}`);
    }
    let fields: Record<string, string>;
    try {
      fields = decodeXml(text);
    } catch (error) {
      if (error instanceof XmlError) return unknown('BAD_XML', error.message);
      throw error;
    }
    if (fields.return_code !== 'SUCCESS') {
      // No sign on a return_code=FAIL answer: nothing to verify, and nothing in it can be trusted beyond "not done".
      return unknown(
        'RETURN_FAIL',
        `return_code=${clip(fields.return_code ?? '(none)')} return_msg=${clip(fields.return_msg ?? '')}`,
      );
    }
    // Verified with the algorithm of the request: answers rarely echo sign_type.
    if (!verify(fields, this.merchant.apiKey, this.merchant.signType)) {
      return unknown('BAD_SIGNATURE', `signature of the ${call} answer does not verify (${this.merchant.signType})`);
    }
    const m = this.merchant;
    const echoes: Array<[string, string]> = [
      ['appid', m.appId],
      ['mch_id', m.mchId],
    ];
    if (m.subMchId) echoes.push(['sub_mch_id', m.subMchId]);
    // An answer about another order must never settle this one (only checked when the answer carries it).
    if (outTradeNo !== null && fields.out_trade_no !== undefined && fields.out_trade_no !== '') echoes.push(['out_trade_no', outTradeNo]);
    for (const [name, ours] of echoes) {
      if (fields[name] !== ours) {
        return unknown('ECHO_MISMATCH', `${name} in the answer is ${clip(fields[name] ?? '(none)')}, expected ${ours}`);
      }
    }
    if (fields.result_code === 'SUCCESS') return { kind: 'success', call, fields, ms: elapsed(started), origin };
    if (fields.result_code === 'FAIL') {
      return {
        kind: 'business',
        call,
        errCode: fields.err_code ?? '',
        errCodeDes: fields.err_code_des ?? '',
        fields,
        ms: elapsed(started),
        origin,
      };
    }
    return unknown('BAD_XML', `result_code is ${clip(fields.result_code ?? '(none)')}, expected SUCCESS or FAIL`);
  }
}

function checkBillDate(billDate: unknown): void {
  const bad = new TypeError('billDate must be a calendar date as yyyyMMdd');
  if (typeof billDate !== 'string' || !/^\d{8}$/.test(billDate)) throw bad;
  const [y, m, d] = [Number(billDate.slice(0, 4)), Number(billDate.slice(4, 6)), Number(billDate.slice(6, 8))];
  const date = new Date(Date.UTC(y, m - 1, d));
  if (y < 1000 || date.getUTCFullYear() !== y || date.getUTCMonth() !== m - 1 || date.getUTCDate() !== d) throw bad;
}

function checkOutRefundNo(outRefundNo: unknown): void {
  if (typeof outRefundNo !== 'string' || !OUT_REFUND_NO.test(outRefundNo)) throw new TypeError(`outRefundNo must be ${OUT_REFUND_NO_RULE}`);
}

function checkFen(name: string, fen: unknown): void {
  if (typeof fen !== 'number' || !Number.isSafeInteger(fen) || fen <= 0) throw new TypeError(`${name} must be a positive safe integer number of fen`);
}

function checkOutTradeNo(outTradeNo: unknown): void {
  if (typeof outTradeNo !== 'string' || !OUT_TRADE_NO.test(outTradeNo)) {
    throw new TypeError(`outTradeNo must be ${OUT_TRADE_NO_RULE}`);
  }
}

function elapsed(started: number): number {
  return Math.round(performance.now() - started);
}

function clip(text: string, max = 160): string {
  const oneLine = text.replace(/[\r\n\t]+/g, ' ');
  return oneLine.length > max ? `${oneLine.slice(0, max)}...` : oneLine;
}

/** Removes the payment code and the API key from any text, whatever the other side echoed back. */
function scrubber(authCode: string | null, apiKey: string): (text: string) => string {
  const secrets: Array<[string, string]> = [[apiKey, '[api key]']];
  // A real payment code is 16-24 digits; a shorter test value would mangle unrelated text.
  if (authCode && authCode.length >= 6) secrets.push([authCode, maskCode(authCode)]);
  return (text) => secrets.reduce((out, [secret, shown]) => (secret === '' ? out : out.split(secret).join(shown)), text);
}

function scrubOutcome(outcome: ApiOutcome, scrub: (text: string) => string): ApiOutcome {
  if (outcome.kind === 'unknown') return { ...outcome, message: scrub(outcome.message) };
  const fields: Record<string, string> = {};
  for (const [name, value] of Object.entries(outcome.fields)) fields[name] = scrub(value);
  if (outcome.kind === 'business') {
    return { ...outcome, errCode: scrub(outcome.errCode), errCodeDes: scrub(outcome.errCodeDes), fields };
  }
  return { ...outcome, fields };
}
