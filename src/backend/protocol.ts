import { DEVICE_ID, DEVICE_ID_RULE, OUT_REFUND_NO, OUT_REFUND_NO_RULE, OUT_TRADE_NO, OUT_TRADE_NO_RULE } from '../ids.js';
import type { ApiCall, ApiOutcome, BillOutcome, BillType, FailureCode } from '../wechatpay/client.js';

/**
 * The box <-> backend wire format (contract §8), over HTTPS with the box's client certificate:
 *
 *   POST /v1/<call>          call: micropay orderquery reverse refund refundquery downloadbill
 *   content-type: application/json
 *   body: the call's request, the object WechatPayClient's method of that name takes
 *
 *   200 {"outcome": <ApiOutcome>}       what the backend's WeChat Pay client made of WeChat Pay's answer
 *                                       (downloadbill: a BillOutcome), signature and echoes already verified
 *   4xx/503 {"refused": {"code", "text"}}  the backend stopped the call: nothing of it went to WeChat Pay
 *
 * Both sides check everything: the backend because a box may be stolen and its requests forged, the box
 * because an answer it cannot read is not an answer (it is `unknown`, as a garbled WeChat Pay answer is).
 */

export const PROTOCOL_VERSION = 'v1';
export const CALLS: readonly ApiCall[] = ['micropay', 'orderquery', 'reverse', 'refund', 'refundquery', 'downloadbill'];

/** A request body is a few hundred bytes; the cap keeps a stolen box from making the backend buffer megabytes. */
export const MAX_REQUEST_BYTES = 8 * 1024;

export type RefusalCode =
  /** The request is not one of the calls, or a field is missing, extra or malformed. */
  | 'BAD_REQUEST'
  /** The certificate chains to the backend's CA but no box is enrolled with it (or it has expired). */
  | 'BOX_UNKNOWN'
  /** The box, or this certificate of it, was revoked. */
  | 'BOX_REVOKED'
  /** out_trade_no / out_refund_no does not begin with the box's device id, or device_info is another box's. */
  | 'NOT_YOUR_ORDER'
  /** More than the box may charge or refund in one call. */
  | 'AMOUNT_LIMIT'
  /** The box may not refund (its enrolment did not allow it: `--refunds on`). */
  | 'REFUNDS_OFF'
  /** A refund of an order the backend's journal does not show it charged for this box. */
  | 'NOT_CHARGED'
  /** The refunds of the order would pass its amount as the backend charged it. */
  | 'OVER_AMOUNT'
  /** The box's refunds of the business day would pass SCANBOX_BACKEND_REFUND_DAY_MAX. */
  | 'REFUND_LIMIT'
  /** The box may not download the merchant's bill. */
  | 'BILLS_OFF'
  /** Too many calls from this box in the last minute. */
  | 'RATE_LIMITED'
  /** The backend cannot record the call (its journal is not writable), so it does not make it. */
  | 'BACKEND_UNAVAILABLE';

export const REFUSAL_STATUS: Readonly<Record<RefusalCode, number>> = {
  BAD_REQUEST: 400,
  BOX_UNKNOWN: 403,
  BOX_REVOKED: 403,
  NOT_YOUR_ORDER: 403,
  AMOUNT_LIMIT: 403,
  REFUNDS_OFF: 403,
  NOT_CHARGED: 403,
  OVER_AMOUNT: 403,
  REFUND_LIMIT: 403,
  BILLS_OFF: 403,
  RATE_LIMITED: 429,
  BACKEND_UNAVAILABLE: 503,
};

export const REFUSAL_CODES = Object.keys(REFUSAL_STATUS) as RefusalCode[];

export interface Refusal {
  code: RefusalCode;
  text: string;
}

export interface MicropayRequest {
  outTradeNo: string;
  totalFee: number;
  authCode: string;
  body: string;
  deviceInfo?: string;
  attach?: string;
}
export interface OrderRequest {
  outTradeNo: string;
}
export interface RefundRequest {
  outTradeNo: string;
  outRefundNo: string;
  totalFee: number;
  refundFee: number;
  refundDesc?: string;
}
export interface RefundQueryRequest {
  outRefundNo: string;
}
export interface BillRequest {
  billDate: string;
  billType?: BillType;
  gzip?: boolean;
}

export type CallRequest =
  | { call: 'micropay'; request: MicropayRequest }
  | { call: 'orderquery'; request: OrderRequest }
  | { call: 'reverse'; request: OrderRequest }
  | { call: 'refund'; request: RefundRequest }
  | { call: 'refundquery'; request: RefundQueryRequest }
  | { call: 'downloadbill'; request: BillRequest };

/** A WeChat payment code: 18 digits beginning 10-15 (what the scanner passes on as WeChat's). */
const AUTH_CODE = /^1[0-5]\d{16}$/;
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
/** The most fen one call may name (10^8 yuan); the policy's limit is far lower. */
const MAX_FEN = 10_000_000_000;

class Invalid extends Error {}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function only(body: Record<string, unknown>, required: readonly string[], optional: readonly string[]): void {
  const allowed = new Set([...required, ...optional]);
  const extra = Object.keys(body).filter((key) => !allowed.has(key));
  if (extra.length > 0) throw new Invalid(`unexpected field ${extra.sort().join(', ')}`);
  for (const name of required) if (body[name] === undefined) throw new Invalid(`${name} is required`);
}

function pattern(body: Record<string, unknown>, name: string, re: RegExp, rule: string): string {
  const value = body[name];
  if (typeof value !== 'string' || !re.test(value)) throw new Invalid(`${name} must be ${rule}`);
  return value;
}

function fen(body: Record<string, unknown>, name: string): number {
  const value = body[name];
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0 || value > MAX_FEN) {
    throw new Invalid(`${name} must be a whole number of fen, 1..${MAX_FEN}`);
  }
  return value;
}

function text(body: Record<string, unknown>, name: string, maxBytes: number): string {
  const value = body[name];
  if (typeof value !== 'string' || value === '' || CONTROL.test(value) || Buffer.byteLength(value, 'utf8') > maxBytes || Buffer.from(value, 'utf8').toString('utf8') !== value) {
    throw new Invalid(`${name} must be 1-${maxBytes} bytes of UTF-8 text without control characters`);
  }
  return value;
}

function billDate(body: Record<string, unknown>): string {
  const value = pattern(body, 'billDate', /^\d{8}$/, 'a date as yyyyMMdd');
  const [y, m, d] = [Number(value.slice(0, 4)), Number(value.slice(4, 6)), Number(value.slice(6, 8))];
  const date = new Date(Date.UTC(y, m - 1, d));
  if (y < 2000 || date.getUTCFullYear() !== y || date.getUTCMonth() !== m - 1 || date.getUTCDate() !== d) {
    throw new Invalid('billDate must be a calendar date as yyyyMMdd');
  }
  return value;
}

/**
 * The request of `call` from a JSON body that was parsed already, every field checked and copied (nothing of
 * the body goes anywhere unchecked); or what is wrong with it.
 */
export function parseRequest(call: string, body: unknown): { ok: true; value: CallRequest } | { ok: false; text: string } {
  try {
    if (!isRecord(body)) throw new Invalid('the body must be a JSON object');
    switch (call) {
      case 'micropay': {
        only(body, ['outTradeNo', 'totalFee', 'authCode', 'body'], ['deviceInfo', 'attach']);
        const request: MicropayRequest = {
          outTradeNo: pattern(body, 'outTradeNo', OUT_TRADE_NO, OUT_TRADE_NO_RULE),
          totalFee: fen(body, 'totalFee'),
          authCode: pattern(body, 'authCode', AUTH_CODE, 'a WeChat payment code (18 digits, 10-15...)'),
          // WeChat Pay's limits: body 128 bytes, attach 127.
          body: text(body, 'body', 128),
        };
        if (body.deviceInfo !== undefined) request.deviceInfo = pattern(body, 'deviceInfo', DEVICE_ID, DEVICE_ID_RULE);
        if (body.attach !== undefined) request.attach = text(body, 'attach', 127);
        return { ok: true, value: { call, request } };
      }
      case 'orderquery':
      case 'reverse':
        only(body, ['outTradeNo'], []);
        return { ok: true, value: { call, request: { outTradeNo: pattern(body, 'outTradeNo', OUT_TRADE_NO, OUT_TRADE_NO_RULE) } } };
      case 'refund': {
        only(body, ['outTradeNo', 'outRefundNo', 'totalFee', 'refundFee'], ['refundDesc']);
        const request: RefundRequest = {
          outTradeNo: pattern(body, 'outTradeNo', OUT_TRADE_NO, OUT_TRADE_NO_RULE),
          outRefundNo: pattern(body, 'outRefundNo', OUT_REFUND_NO, OUT_REFUND_NO_RULE),
          totalFee: fen(body, 'totalFee'),
          refundFee: fen(body, 'refundFee'),
        };
        if (request.refundFee > request.totalFee) throw new Invalid('refundFee must not exceed totalFee');
        if (body.refundDesc !== undefined) request.refundDesc = text(body, 'refundDesc', 80);
        return { ok: true, value: { call, request } };
      }
      case 'refundquery':
        only(body, ['outRefundNo'], []);
        return { ok: true, value: { call, request: { outRefundNo: pattern(body, 'outRefundNo', OUT_REFUND_NO, OUT_REFUND_NO_RULE) } } };
      case 'downloadbill': {
        only(body, ['billDate'], ['billType', 'gzip']);
        const request: BillRequest = { billDate: billDate(body) };
        if (body.billType !== undefined) {
          if (body.billType !== 'ALL' && body.billType !== 'SUCCESS' && body.billType !== 'REFUND') throw new Invalid('billType must be ALL, SUCCESS or REFUND');
          request.billType = body.billType;
        }
        if (body.gzip !== undefined) {
          if (typeof body.gzip !== 'boolean') throw new Invalid('gzip must be true or false');
          request.gzip = body.gzip;
        }
        return { ok: true, value: { call, request } };
      }
      default:
        return { ok: false, text: `no such call: ${call.slice(0, 40)}` };
    }
  } catch (error) {
    if (error instanceof Invalid) return { ok: false, text: error.message };
    throw error;
  }
}

/** The out_trade_no and out_refund_no a request names (what the backend's journal records and the policy checks). */
export function idsOf(value: CallRequest): { outTradeNo: string | null; outRefundNo: string | null } {
  const r = value.request as Partial<RefundRequest>;
  return { outTradeNo: r.outTradeNo ?? null, outRefundNo: r.outRefundNo ?? null };
}

// ---- answers, read by the box ----

const FAILURES: Readonly<Record<FailureCode, true>> = {
  TIMEOUT: true,
  NETWORK: true,
  HTTP_STATUS: true,
  BAD_XML: true,
  BAD_SIGNATURE: true,
  ECHO_MISMATCH: true,
  RETURN_FAIL: true,
  CERT_REJECTED: true,
  BAD_BILL: true,
};

/** More fields than any V2 answer has (a refundquery lists at most 50 refunds of a dozen fields each). */
const MAX_FIELDS = 1000;
const MAX_TEXT = 4096;

function str(value: unknown, max = MAX_TEXT): string {
  if (typeof value !== 'string' || value.length > max) throw new Invalid('not a string');
  return value;
}

function ms(value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new Invalid('ms is not a duration');
  return value;
}

function origin(value: unknown, nullable: boolean): string | null {
  if (value === null && nullable) return null;
  return str(value, 512);
}

function fields(value: unknown): Record<string, string> {
  if (!isRecord(value)) throw new Invalid('fields is not an object');
  const entries = Object.entries(value);
  if (entries.length > MAX_FIELDS) throw new Invalid('too many fields');
  const out: Record<string, string> = {};
  for (const [name, field] of entries) {
    if (!/^[a-z][a-z0-9_]{0,63}$/.test(name)) throw new Invalid(`field name ${name.slice(0, 40)}`);
    out[name] = str(field);
  }
  return out;
}

function unknownOutcome<C extends ApiCall>(call: C, o: Record<string, unknown>): Extract<ApiOutcome, { kind: 'unknown' }> & { call: C } {
  const failure = o.failure;
  if (typeof failure !== 'string' || !Object.hasOwn(FAILURES, failure)) throw new Invalid('failure');
  if (o.unsent !== undefined && typeof o.unsent !== 'boolean') throw new Invalid('unsent');
  return {
    kind: 'unknown',
    call,
    failure: failure as FailureCode,
    message: str(o.message),
    ms: ms(o.ms),
    origin: origin(o.origin, true),
    ...(o.unsent === true ? { unsent: true } : {}),
  };
}

/**
 * The outcome in a 200 answer to `call`, rebuilt from checked parts; null when it is not one (the box then
 * treats the answer as unknown). An answer about another call, or naming another out_trade_no, is not one.
 */
export function parseOutcome(call: Exclude<ApiCall, 'downloadbill'>, answer: unknown, outTradeNo: string | null): ApiOutcome | null {
  try {
    if (!isRecord(answer) || !isRecord(answer.outcome)) return null;
    const o = answer.outcome;
    if (o.call !== call) return null;
    switch (o.kind) {
      case 'success':
      case 'business': {
        const f = fields(o.fields);
        // The box's gateway alone marks its own refusals (backend/gateway.ts): never taken from the wire.
        delete f.backend_refusal;
        if (outTradeNo !== null && f.out_trade_no !== undefined && f.out_trade_no !== '' && f.out_trade_no !== outTradeNo) return null;
        const common = { call, fields: f, ms: ms(o.ms), origin: origin(o.origin, false) as string };
        if (o.kind === 'success') return { kind: 'success', ...common };
        return { kind: 'business', errCode: str(o.errCode, 64), errCodeDes: str(o.errCodeDes), ...common };
      }
      case 'unknown':
        return unknownOutcome(call, o);
      default:
        return null;
    }
  } catch (error) {
    if (error instanceof Invalid) return null;
    throw error;
  }
}

/** The box's cap on a bill's text in the answer (the client's MAX_BILL_BYTES, as JSON may escape it). */
export const MAX_BILL_TEXT = 64 * 1024 * 1024;

export function parseBillOutcome(answer: unknown): BillOutcome | null {
  try {
    if (!isRecord(answer) || !isRecord(answer.outcome)) return null;
    const o = answer.outcome;
    const call = 'downloadbill';
    if (o.call !== call) return null;
    switch (o.kind) {
      case 'bill': {
        const bytes = o.bytes;
        if (typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes < 0) return null;
        if (typeof o.gzip !== 'boolean') return null;
        return { kind: 'bill', call, text: str(o.text, MAX_BILL_TEXT), bytes, gzip: o.gzip, ms: ms(o.ms), origin: origin(o.origin, false) as string };
      }
      case 'no_bill':
      case 'not_ready':
        return { kind: o.kind, call, message: str(o.message), ms: ms(o.ms), origin: origin(o.origin, false) as string };
      case 'unknown':
        return unknownOutcome(call, o);
      default:
        return null;
    }
  } catch (error) {
    if (error instanceof Invalid) return null;
    throw error;
  }
}

/** The refusal in a 4xx/503 answer; null when it is not one. */
export function parseRefusal(answer: unknown): Refusal | null {
  if (!isRecord(answer) || !isRecord(answer.refused)) return null;
  const { code, text: said } = answer.refused;
  if (typeof code !== 'string' || !Object.hasOwn(REFUSAL_STATUS, code)) return null;
  if (typeof said !== 'string' || said.length > MAX_TEXT) return null;
  return { code: code as RefusalCode, text: said };
}
