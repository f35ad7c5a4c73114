import { constants as cryptoConstants } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { TLSSocket } from 'node:tls';
import { messageOf } from '../errors.js';
import type { Logger } from '../log.js';
import type { ApiCall, ApiOutcome, BillOutcome, WechatPayClient } from '../wechatpay/client.js';
import { normalizeSerial } from './pki.js';
import {
  CALLS,
  MAX_REQUEST_BYTES,
  PROTOCOL_VERSION,
  REFUSAL_STATUS,
  idsOf,
  parseRequest,
  type CallRequest,
  type RefusalCode,
} from './protocol.js';
import { BILL_TIME_ZONE } from '../books/reconcile.js';
import { businessDay, chinaTimeMs, dayBounds } from '../business-day.js';
import { BillCache, boxTrades } from './bills.js';
import { SEND_WITHIN_MS, UpstreamGate } from './upstream.js';
import { HEARTBEAT_PATH, parseHeartbeatReport, type HeartbeatReport } from './heartbeat.js';
import { HeartbeatBatch } from './heartbeat-batch.js';
import type { BackendStore, BoxRecord, BoxRefunds, CallOutcomeKind, NewCall } from './store.js';

/**
 * `scanbox backend`'s HTTPS server (contract §8): the only place that holds the merchant's API key and
 * certificate; boxes send it their WeChat Pay calls over mutual TLS and get the verified outcome back.
 *
 * For every request, in this order, and nothing goes to WeChat Pay unless all of it passes:
 * 1. TLS: a client certificate issued by the backend's CA (Node refuses the handshake otherwise).
 * 2. The certificate's serial is enrolled in the store for the device id in its CN, neither it nor the box
 *    revoked, not expired. `recheck()` reads it for every open connection in one statement every `recheckMs`
 *    (default 1 s), and at once when another backend's revoke is heard (LISTEN/NOTIFY on PostgreSQL); it cuts
 *    the connections whose standing is lost, and `revoke()` cuts them at once. A micropay or orderquery reuses
 *    its connection's standing as last read (by the recheck or an earlier request), never older than one
 *    recheck period nor from before the last recheck or revoke began: a revoke written by another process
 *    (`scanbox backend revoke`) is refused by all within a second, at once when heard. Every other call (a
 *    refund, reverse, refundquery, bill, heartbeat) reads the store itself, so a policy change (`scanbox
 *    backend policy`) holds for refunds from the next one on and for micropay's amount limit within a second
 *    (at once on PostgreSQL, where the change is told like a revoke). Without a recheck timer (`recheckMs` 0)
 *    every request reads the store. Polling was chosen over a control socket: the store is already shared by
 *    all processes.
 * 3. The box's rate limit; then the request itself, every field checked (protocol.ts).
 * 4. The policy: the box's own orders only (out_trade_no / out_refund_no beginning with its device id, its own
 *    device_info), the amount limit, refunds and bills allowed.
 * 5. The call is recorded in the store before it goes upstream (a store that cannot record refuses it), and its
 *    outcome after.
 * The upstream call is the project's WechatPayClient, so signing, verification, failover and timeouts are its.
 */

export type UpstreamClient = Pick<WechatPayClient, 'micropay' | 'orderquery' | 'reverse' | 'refund' | 'refundquery' | 'downloadbill'>;

export interface BackendPolicy {
  /** Largest micropay total_fee and refund refund_fee in fen, unless the box has its own (SCANBOX_BACKEND_MAX_AMOUNT). */
  maxAmountFen: number;
  /** Whether boxes may refund, unless the box has its own setting (SCANBOX_BACKEND_REFUNDS, default off). */
  refunds: BoxRefunds;
  /** Most fen one box may refund in a business day, China time (SCANBOX_BACKEND_REFUND_DAY_MAX); default 100000. */
  refundDayMaxFen?: number;
  /** Whether boxes may download their bill, cut to their own trades (SCANBOX_BACKEND_BILLS). */
  bills: 'on' | 'off';
  /** Calls per box per minute, all calls counted (SCANBOX_BACKEND_RATE). */
  ratePerMinute: number;
}

export interface BackendServerOptions {
  /** Port 0: any free port (tests). */
  listen: { host: string; port: number };
  store: BackendStore;
  pki: { caPem: string; serverCertPem: string; serverKeyPem: string };
  client: UpstreamClient;
  policy: BackendPolicy;
  log: Logger;
  /** Wall clock for records, certificate expiry and the rate limit; default Date.now. */
  now?: () => number;
  /** How often open connections are checked against the store; 0 turns the timer off (tests call recheck()). */
  recheckMs?: number;
  /** The bill cache's times (backend/bills.ts); tests shorten them. */
  bills?: { keepMs?: number; retryMs?: number };
  /**
   * The upstream gate (backend/upstream.ts): `connections` micropays and orderqueries under way at once, the
   * client's payConnections (default 1); a call not sent within `sendWithinMs` (default 5000) of its arrival
   * is answered as never sent.
   */
  upstream?: { connections?: number; sendWithinMs?: number };
  /**
   * Connections (contract §8, M3 of the review): a TLS handshake must finish within `handshakeMs` (default
   * 10 s); at most `total` open connections (default 4096) and `perAddress` from one address (default 64);
   * refused handshakes and connections over a cap are logged as one line a minute with their count.
   */
  connections?: { handshakeMs?: number; total?: number; perAddress?: number };
  /** Told of every call's end and every heartbeat kept (the metrics, console/metrics.ts). */
  observer?: ServerObserver;
  /** Heartbeats are written in batches (heartbeat-batch.ts): at most `batchMs` (default 1000) late, `batchMax` (500) at a time. */
  heartbeats?: { batchMs?: number; batchMax?: number };
}

export const DEFAULT_CONNECTION_LIMITS = { handshakeMs: 10_000, total: 8192, perAddress: 64 } as const;

/**
 * Refused handshakes and connections over a cap, told in the log without a line each: the first of a quiet
 * spell at once, the rest counted and told in one line at the end of each minute they go on.
 */
class RefusalSummary {
  private counts = { handshakes: 0, overCap: 0 };
  private last: { from: string; error: string } | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly log: Logger,
    private readonly everyMs = 60_000,
  ) {}

  add(kind: 'handshakes' | 'overCap', from: string, error: string): void {
    if (this.timer === null) {
      this.log.warning(kind === 'handshakes' ? 'backend: TLS handshake refused' : 'backend: connection refused, over the cap', { from, error });
      this.timer = setTimeout(() => this.flush(), this.everyMs);
      this.timer.unref();
      return;
    }
    this.counts[kind] += 1;
    this.last = { from, error };
  }

  /** Tells what was counted (the timer does it every minute); the spell ends when nothing was. */
  flush(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const { handshakes, overCap } = this.counts;
    if (handshakes === 0 && overCap === 0) return;
    this.log.warning('backend: more connections refused in the last minute', {
      handshakes_refused: handshakes,
      over_cap: overCap,
      last_from: this.last?.from,
      last_error: this.last?.error,
    });
    this.counts = { handshakes: 0, overCap: 0 };
    this.last = null;
    this.timer = setTimeout(() => this.flush(), this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}

/** SCANBOX_BACKEND_REFUND_DAY_MAX's default: 1,000 yuan a box and business day. */
export const DEFAULT_REFUND_DAY_MAX_FEN = 100_000;

/** What the metrics count; never asked for anything back, and its errors are not the box's. */
export interface ServerObserver {
  /** A call that went upstream and came back (`seconds`: WeChat Pay's part), or was refused (`refusal`). */
  call(call: ApiCall | 'heartbeat', outcome: CallOutcomeKind, detail: { seconds?: number; refusal?: RefusalCode }): void;
  heartbeat(deviceId: string, report: HeartbeatReport, at: number): void;
}

/** Heartbeats per box per minute: one a minute and one per health change; more is a box in a loop. */
const HEARTBEATS_PER_MINUTE = 20;

/** A call's path: /v1/<call>. */
const CALL_PATH = new RegExp(`^/${PROTOCOL_VERSION}/([a-z]+)$`);

/** Node's limits on one request: the headers and the small JSON body in 10 s; an idle keep-alive connection 150 s. */
const HEADERS_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 15_000;
/**
 * Above what the box keeps an idle connection (its calls' 30 s, its heartbeats' 120 s, which outlast the minute
 * between two heartbeats: a box sends them all on one TLS connection, and a new handshake costs the backend more
 * than the heartbeat), so the box, not the backend, closes idle connections (no write into a closing socket).
 */
export const KEEP_ALIVE_MS = 150_000;

type Standing = { box: BoxRecord | null; problem: string | null; code: RefusalCode; revokedAt?: number };

type Found = Awaited<ReturnType<BackendStore['peer']>>;

interface Peer {
  deviceId: string;
  serial: string;
  notAfter: number;
  /**
   * The store's revocation mark when this connection's certificate and box were last found good, and the box
   * then: a heartbeat asks the store only whether the mark moved since (one cheap read, as fresh as the two
   * reads of a call), not for the certificate and the box again.
   */
  good?: { mark: string; box: BoxRecord };
  /**
   * What the store last said of this connection's certificate and box, when that was good: reused by its
   * micropays and orderqueries while `generation` is the server's and it is at most a recheck period old.
   */
  checked?: { found: Found; at: number; generation: number };
}

class Refused extends Error {
  constructor(
    readonly code: RefusalCode,
    readonly text: string,
  ) {
    super(`${code}: ${text}`);
  }
}

/** A token bucket per box: `ratePerMinute` calls, refilled evenly over a minute. */
class RateLimit {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  constructor(
    private readonly perMinute: number,
    private readonly now: () => number,
  ) {}

  take(deviceId: string): boolean {
    const now = this.now();
    const bucket = this.buckets.get(deviceId) ?? { tokens: this.perMinute, at: now };
    bucket.tokens = Math.min(this.perMinute, bucket.tokens + (Math.max(0, now - bucket.at) * this.perMinute) / 60_000);
    bucket.at = now;
    this.buckets.set(deviceId, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }
}

function outcomeCode(outcome: ApiOutcome | BillOutcome): string | null {
  if (outcome.kind === 'business') return outcome.errCode;
  if (outcome.kind === 'unknown') return outcome.failure;
  return null;
}

/** The amount a request names, kept in the journal for reconciliation: a micropay's total_fee, a refund's refund_fee. */
function amountOf(value: CallRequest): number | null {
  if (value.call === 'micropay') return value.request.totalFee;
  if (value.call === 'refund') return value.request.refundFee;
  return null;
}

/** What a verified success answer established (CallRecord.state), for reconciliation; null for any other outcome. */
export function stateOf(value: CallRequest, outcome: ApiOutcome | BillOutcome): string | null {
  if (outcome.kind !== 'success') return null;
  const f = outcome.fields;
  switch (value.call) {
    case 'micropay':
      return 'SUCCESS';
    case 'orderquery':
      return f.trade_state || null;
    case 'reverse':
      return f.recall === 'Y' ? 'RECALL' : 'REVERSED';
    case 'refund':
      return 'ACCEPTED';
    case 'refundquery': {
      for (const [name, no] of Object.entries(f)) {
        const n = /^out_refund_no_(\d{1,3})$/.exec(name)?.[1];
        if (n !== undefined && no === value.request.outRefundNo) return f[`refund_status_${n}`] || null;
      }
      return null;
    }
    default:
      return null;
  }
}

/** WeChat Pay's payment time (time_end) of a verified answer saying the order is paid; null otherwise. */
export function paidAtOf(value: CallRequest, outcome: ApiOutcome | BillOutcome): number | null {
  if (outcome.kind !== 'success') return null;
  const paid = value.call === 'micropay' || (value.call === 'orderquery' && (outcome.fields.trade_state === 'SUCCESS' || outcome.fields.trade_state === 'REFUND'));
  return paid ? chinaTimeMs(outcome.fields.time_end ?? '') : null;
}

/** The TLS settings of the backend's listener, for its server certificate. */
function secureContextOf(pki: { caPem: string; serverCertPem: string; serverKeyPem: string }) {
  return {
    key: pki.serverKeyPem,
    cert: pki.serverCertPem,
    // The backend's CA only: a certificate from anywhere else is refused in the handshake.
    ca: [pki.caPem],
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2' as const,
    // No session tickets: every connection shows its certificate in full, checked again in the handshake.
    secureOptions: cryptoConstants.SSL_OP_NO_TICKET,
  };
}

export class BackendServer {
  readonly origin: string;
  readonly port: number;
  private readonly server: https.Server;
  private readonly o: BackendServerOptions;
  private readonly now: () => number;
  private readonly rate: RateLimit;
  private readonly heartbeatRate: RateLimit;
  private readonly peers = new Map<TLSSocket, Peer>();
  private readonly timer: NodeJS.Timeout | null;
  private rechecking: Promise<number> | null = null;
  /** The store's revocation mark when every open connection was last checked one by one. */
  private checkedMark: string | null = null;
  /** Heartbeats waiting to be written together. */
  readonly heartbeatBatch: HeartbeatBatch;
  /** The recheck period; 0: no timer, and every request reads the store. */
  private readonly every: number;
  /** Bumped by every recheck and revoke: a connection's standing read before it is not reused. */
  private generation = 0;
  /** One download of a day's bill for every box, each handed its own trades (contract §8). */
  readonly bills: BillCache;
  /** At most as many micropays and orderqueries under way as the client has connections (backend/upstream.ts). */
  readonly gate: UpstreamGate;
  private closing: Promise<void> | null = null;
  private readonly byAddress = new Map<string, number>();
  private servedCertPem: string;
  /** TLS handshakes completed since the start (the bench reads it). */
  handshakes = 0;
  /** Refused handshakes and connections, summarised in the log. */
  readonly refusals: RefusalSummary;

  static async start(options: BackendServerOptions): Promise<BackendServer> {
    const p = options.policy;
    if (!Number.isSafeInteger(p.maxAmountFen) || p.maxAmountFen <= 0) throw new TypeError('policy.maxAmountFen must be a positive whole number of fen');
    if (!(p.ratePerMinute >= 1)) throw new TypeError('policy.ratePerMinute must be at least 1');
    const server = https.createServer({
      ...secureContextOf(options.pki),
      // Node's default is 120 s: a port scan would hold sockets that long.
      handshakeTimeout: options.connections?.handshakeMs ?? DEFAULT_CONNECTION_LIMITS.handshakeMs,
    });
    server.maxConnections = options.connections?.total ?? DEFAULT_CONNECTION_LIMITS.total;
    server.headersTimeout = HEADERS_TIMEOUT_MS;
    server.requestTimeout = REQUEST_TIMEOUT_MS;
    server.keepAliveTimeout = KEEP_ALIVE_MS;
    server.maxHeadersCount = 50;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.listen.port, options.listen.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new BackendServer(server, options);
  }

  private constructor(server: https.Server, options: BackendServerOptions) {
    this.server = server;
    this.o = options;
    this.refusals = new RefusalSummary(options.log);
    this.servedCertPem = options.pki.serverCertPem;
    this.now = options.now ?? Date.now;
    this.rate = new RateLimit(options.policy.ratePerMinute, this.now);
    this.bills = new BillCache({ client: options.client, log: options.log, now: this.now, ...options.bills });
    this.gate = new UpstreamGate(options.upstream?.connections ?? 1, options.upstream?.sendWithinMs ?? SEND_WITHIN_MS);
    this.heartbeatRate = new RateLimit(HEARTBEATS_PER_MINUTE, this.now);
    this.heartbeatBatch = new HeartbeatBatch(options.store, { everyMs: options.heartbeats?.batchMs ?? 1000, max: options.heartbeats?.batchMax ?? 500 });
    const address = server.address() as AddressInfo;
    this.port = address.port;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    this.origin = `https://${host === '0.0.0.0' ? '127.0.0.1' : host === '[::]' ? '[::1]' : host}:${address.port}`;
    server.on('secureConnection', (socket: TLSSocket) => {
      this.handshakes += 1;
      this.accept(socket);
    });
    const capped = new WeakSet<Socket>();
    server.on('tlsClientError', (error: Error, socket: TLSSocket) => {
      // A connection cut for being over a cap is counted there, not again as a handshake.
      const raw = (socket as TLSSocket & { _parent?: Socket })._parent;
      if (raw !== undefined && capped.has(raw)) return;
      // Refused in the handshake: no certificate, one from another CA, an expired one, too slow. Nothing was read.
      this.refusals.add('handshakes', socket.remoteAddress ?? '-', messageOf(error));
    });
    // Open TCP connections per address, counted before the handshake: one address cannot take them all.
    const perAddress = options.connections?.perAddress ?? DEFAULT_CONNECTION_LIMITS.perAddress;
    server.on('connection', (socket: Socket) => {
      const from = socket.remoteAddress ?? '-';
      const open = (this.byAddress.get(from) ?? 0) + 1;
      if (open > perAddress) {
        this.refusals.add('overCap', from, `more than ${perAddress} connections from one address`);
        capped.add(socket);
        socket.destroy();
        return;
      }
      this.byAddress.set(from, open);
      socket.once('close', () => {
        const left = (this.byAddress.get(from) ?? 1) - 1;
        if (left <= 0) this.byAddress.delete(from);
        else this.byAddress.set(from, left);
      });
    });
    server.on('drop', (data?: { remoteAddress?: string }) => {
      this.refusals.add('overCap', data?.remoteAddress ?? '-', `more than ${server.maxConnections} connections in all`);
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => void this.serve(req, res));
    const every = options.recheckMs ?? 1000;
    this.every = every;
    this.timer = every > 0 ? setInterval(() => void this.recheckIfRevoked(), every) : null;
    this.timer?.unref();
  }

  /**
   * Serves `pki`'s server certificate to new connections from now on, when it is not the one served: the
   * running backend's renewal (BackendPki.openOrCreate re-issues it 30 days before it ends). True when changed.
   */
  useCertificate(pki: { caPem: string; serverCertPem: string; serverKeyPem: string }): boolean {
    if (pki.serverCertPem === this.servedCertPem) return false;
    this.server.setSecureContext(secureContextOf(pki));
    this.servedCertPem = pki.serverCertPem;
    this.o.log.info('backend: server certificate renewed; new connections get the new one');
    return true;
  }

  /** Open TLS connections, of one box or of all. */
  connections(deviceId?: string): number {
    let count = 0;
    for (const peer of this.peers.values()) if (deviceId === undefined || peer.deviceId === deviceId) count++;
    return count;
  }

  /** Revokes the box in the store and cuts its open connections at once. False when there is no such box. */
  async revoke(deviceId: string): Promise<boolean> {
    const found = await this.o.store.revoke(deviceId, this.now());
    this.generation++;
    for (const [socket, peer] of this.peers) if (peer.deviceId === deviceId) this.cut(socket, peer, 'revoked');
    if (found) this.o.log.warning('backend: box revoked', { box: deviceId });
    return found;
  }

  /** Cuts every open connection whose certificate is no longer good in the store; returns how many were cut. */
  recheck(): Promise<number> {
    this.rechecking ??= this.recheckOnce().finally(() => {
      this.rechecking = null;
    });
    return this.rechecking;
  }

  /**
   * The timer's check: with thousands of boxes keeping a connection open, asking the store about each of them
   * every second would cost more than all their heartbeats. So one cheap question (the store's revocation mark)
   * each time, the connections checked one by one only when it moved; a certificate's end is checked here on
   * each connection (the store is not needed for it).
   */
  async recheckIfRevoked(): Promise<number> {
    let mark: string;
    try {
      mark = await this.o.store.revocationMark();
    } catch (error) {
      this.o.log.error('backend: cannot read the store to check open connections', { error: messageOf(error) });
      return 0;
    }
    if (mark !== this.checkedMark) return this.recheck();
    let cut = 0;
    const now = this.now();
    for (const [socket, peer] of [...this.peers]) {
      if (peer.notAfter > 0 && peer.notAfter <= now) {
        this.cut(socket, peer, `certificate ${peer.serial} of ${peer.deviceId} has expired`);
        cut++;
      }
    }
    return cut;
  }

  private async recheckOnce(): Promise<number> {
    let cut = 0;
    // Standings read before now are not reused from here on: until this read answers, requests read the store.
    const generation = ++this.generation;
    // Read before the connections are checked: a revocation during the check moves it again.
    const mark = await this.o.store.revocationMark().catch(() => null);
    const open = [...this.peers];
    if (open.length === 0) {
      this.checkedMark = mark;
      return 0;
    }
    const readAt = this.now();
    let found: Awaited<ReturnType<BackendStore['peers']>>;
    try {
      // Every open connection's certificate and box in one read of the store.
      found = await this.o.store.peers(open.map(([, peer]) => peer.serial).filter((serial) => serial !== ''));
    } catch (error) {
      // A store that cannot be read says nothing about the box: the next request is refused anyway.
      this.o.log.error('backend: cannot read the store to check open connections', { error: messageOf(error) });
      return cut;
    }
    for (const [socket, peer] of open) {
      if (!this.peers.has(socket)) continue;
      const problem = this.judge(peer, found.get(peer.serial)).problem;
      if (problem !== null) {
        this.cut(socket, peer, problem);
        cut++;
      } else if (generation === this.generation) {
        peer.checked = { found: found.get(peer.serial), at: readAt, generation };
      }
    }
    this.checkedMark = mark;
    return cut;
  }

  /** Outcomes being recorded after their answer went back: a clean stop waits for them. */
  private readonly records = new Set<Promise<void>>();

  private recording(record: Promise<void>): void {
    this.records.add(record);
    void record.finally(() => this.records.delete(record));
  }

  close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.refusals.stop();
    this.closing ??= new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
      for (const socket of this.peers.keys()) socket.destroy();
      // The heartbeats received and not yet written are written, and the outcomes: a clean stop loses none.
    }).then(() => Promise.all([this.heartbeatBatch.close(), ...this.records]).then(() => undefined));
    return this.closing;
  }

  private accept(socket: TLSSocket): void {
    const cert = socket.getPeerCertificate();
    const deviceId = typeof cert?.subject?.CN === 'string' ? cert.subject.CN : '';
    const serial = typeof cert?.serialNumber === 'string' ? normalizeSerial(cert.serialNumber) : '';
    const peer: Peer = { deviceId, serial, notAfter: cert?.valid_to ? Date.parse(cert.valid_to) : 0 };
    this.peers.set(socket, peer);
    socket.once('close', () => this.peers.delete(socket));
  }

  private cut(socket: TLSSocket, peer: Peer, why: string): void {
    this.o.log.warning('backend: connection cut', { box: peer.deviceId, serial: peer.serial, why });
    this.peers.delete(socket);
    socket.destroy();
  }

  /** A heartbeat's standing: the connection's last good one while the store's revocation mark has not moved. */
  private async heartbeatStanding(peer: Peer): Promise<Awaited<ReturnType<BackendServer['standing']>>> {
    const mark = await this.o.store.revocationMark();
    if (peer.good !== undefined && peer.good.mark === mark && (peer.notAfter === 0 || peer.notAfter > this.now())) {
      return { box: peer.good.box, problem: null, code: 'BOX_UNKNOWN' };
    }
    const standing = await this.standing(peer, null);
    // The mark read before the check: a revocation during it moves the mark, and the next heartbeat checks again.
    if (standing.problem === null && standing.box !== null) peer.good = { mark, box: standing.box };
    else delete peer.good;
    return standing;
  }

  /**
   * The box of a connection's certificate, or why it may not call. A micropay or orderquery reuses what the
   * store said of the connection at most a recheck period ago, unless a recheck or a revoke came since (a
   * NOTIFY from another backend starts a recheck); every other call, and any call when the server has no
   * recheck timer, asks the store: a refund sees a policy change from the next one on.
   */
  private async standing(peer: Peer, call: ApiCall | null): Promise<Standing> {
    if (peer.serial === '' || peer.deviceId === '') return this.judge(peer, undefined);
    const reuse = this.every > 0 && (call === 'micropay' || call === 'orderquery');
    const checked = peer.checked;
    if (reuse && checked !== undefined && checked.generation === this.generation && this.now() - checked.at < this.every) {
      const standing = this.judge(peer, checked.found);
      if (standing.problem === null) return standing;
    }
    const generation = this.generation;
    const readAt = this.now();
    // The certificate and its box in one read of the store.
    const found = await this.o.store.peer(peer.serial);
    const standing = this.judge(peer, found);
    if (standing.problem === null && generation === this.generation) peer.checked = { found, at: readAt, generation };
    return standing;
  }

  /** What the store holds of a connection's certificate and box says about it. */
  private judge(peer: Peer, found: Found): Standing {
    const refuse = (code: RefusalCode, problem: string, revokedAt?: number) => ({ box: null, problem, code, ...(revokedAt === undefined ? {} : { revokedAt }) });
    if (peer.serial === '' || peer.deviceId === '') return refuse('BOX_UNKNOWN', 'no client certificate with a serial and a device id');
    const cert = found?.certificate;
    if (cert === undefined || cert.deviceId !== peer.deviceId) return refuse('BOX_UNKNOWN', `certificate ${peer.serial} is not enrolled for ${peer.deviceId}`);
    if (cert.revokedAt !== null) return refuse('BOX_REVOKED', `certificate ${peer.serial} of ${peer.deviceId} was revoked`, cert.revokedAt);
    const box = found!.box;
    if (box === undefined) return refuse('BOX_UNKNOWN', `box ${peer.deviceId} is not enrolled`);
    if (box.revokedAt !== null) return refuse('BOX_REVOKED', `box ${peer.deviceId} was revoked`, box.revokedAt);
    // TLS checked the dates at the handshake; a connection kept open past the end is cut here.
    if (Math.min(cert.notAfter, peer.notAfter || Infinity) <= this.now()) return refuse('BOX_UNKNOWN', `certificate ${peer.serial} of ${peer.deviceId} has expired`);
    return { box, problem: null, code: 'BOX_UNKNOWN' };
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const arrivedAt = performance.now();
    const socket = req.socket as TLSSocket;
    const peer = this.peers.get(socket);
    const path = (req.url ?? '').split('?')[0] ?? '';
    const match = CALL_PATH.exec(path);
    const call = match && (CALLS as readonly string[]).includes(match[1]!) ? (match[1] as ApiCall) : null;
    const log = this.o.log.child({ box: peer?.deviceId ?? '-', call: call ?? path.slice(0, 40) });
    let recordable: NewCall | null = null;
    try {
      if (peer === undefined) throw new Refused('BOX_UNKNOWN', 'no client certificate on this connection');
      let standing;
      try {
        standing = path === HEARTBEAT_PATH ? await this.heartbeatStanding(peer) : await this.standing(peer, call);
      } catch (error) {
        log.error('backend: cannot read the store; refusing the call', { error: messageOf(error) });
        throw new Refused('BACKEND_UNAVAILABLE', 'the backend cannot read its journal');
      }
      // A revoked box can do nothing new, but may still orderquery and reverse its own orders made before the
      // revocation (contract §8): a sale cut off in the middle then gives the payer's money back.
      const afterRevoke = standing.code === 'BOX_REVOKED' && standing.revokedAt !== undefined && (call === 'orderquery' || call === 'reverse') ? standing.revokedAt : null;
      if ((standing.problem !== null || standing.box === null) && afterRevoke === null) {
        throw new Refused(standing.code, standing.problem ?? 'not enrolled');
      }
      const box: BoxRecord = standing.box ?? {
        deviceId: peer.deviceId,
        serial: null,
        notAfter: null,
        enrolledAt: 0,
        revokedAt: afterRevoke,
        lastSeenAt: null,
        calls: 0,
        errors: 0,
        maxAmountFen: null,
        refunds: 'off',
      };
      if (path === HEARTBEAT_PATH) {
        await this.heartbeat(box, req, res);
        return;
      }
      if (call === null) throw new Refused('BAD_REQUEST', `no such call: POST /${PROTOCOL_VERSION}/<${CALLS.join('|')}>`);
      if (req.method !== 'POST') throw new Refused('BAD_REQUEST', 'only POST');
      recordable = { deviceId: box.deviceId, call, outTradeNo: null, outRefundNo: null, at: this.now() };
      if (!this.rate.take(box.deviceId)) throw new Refused('RATE_LIMITED', `more than ${this.o.policy.ratePerMinute} calls in a minute`);
      const json = await readJsonBody(req, res);
      const parsed = parseRequest(call, json);
      if (!parsed.ok) throw new Refused('BAD_REQUEST', parsed.text);
      recordable = { ...recordable, ...idsOf(parsed.value), amountFen: amountOf(parsed.value) };
      this.police(box, parsed.value);
      if (afterRevoke !== null) {
        const outTradeNo = recordable.outTradeNo ?? '';
        if (!(await this.o.store.orderStartedBefore(box.deviceId, outTradeNo, afterRevoke))) {
          throw new Refused('BOX_REVOKED', `box ${box.deviceId} was revoked; it may only ask about and reverse its orders made before`);
        }
        log.warning('backend: revoked box settles an order made before its revocation', { out_trade_no: outTradeNo });
      }
      await this.forward(parsed.value, recordable, res, log, arrivedAt);
    } catch (error) {
      if (!(error instanceof Refused)) {
        log.error('backend: request failed', { error: messageOf(error) });
        // The call may have gone upstream before the error: unknown, never "refused" (the box queries and
        // reverses what it does not know), while BACKEND_UNAVAILABLE means nothing was sent.
        if (!res.headersSent) {
          if (call === null) this.answer(res, 500, { refused: { code: 'BAD_REQUEST', text: 'internal error' } });
          else this.answer(res, 200, { outcome: { kind: 'unknown', call, failure: 'HTTP_STATUS', message: 'the backend failed while handling the call (internal error)', ms: Math.round(performance.now() - arrivedAt), origin: null } });
        }
        return;
      }
      this.observe(call ?? (path === HEARTBEAT_PATH ? 'heartbeat' : null), 'refused', { refusal: error.code });
      log.warning('backend: call refused', { out_trade_no: recordable?.outTradeNo ?? undefined, out_refund_no: recordable?.outRefundNo ?? undefined, refused: error.code, why: error.text });
      // A flood of refusals (a stolen box hammering) must not fill the journal: the rate limit's are only logged.
      if (recordable !== null && path !== HEARTBEAT_PATH && error.code !== 'BACKEND_UNAVAILABLE' && error.code !== 'RATE_LIMITED') {
        await this.o.store.refusedCall(recordable, error.code).catch((e: unknown) => log.error('backend: cannot record a refusal', { error: messageOf(e) }));
      }
      // Drain what the box sent so the keep-alive connection stays usable; an oversized body closes it instead.
      if (!req.complete) req.resume();
      this.answer(res, REFUSAL_STATUS[error.code], { refused: { code: error.code, text: error.text } });
    }
  }

  /** A box's heartbeat (heartbeat.ts): kept in the store; never counted against the box's calls. Throws Refused. */
  private async heartbeat(box: BoxRecord, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'POST') throw new Refused('BAD_REQUEST', 'only POST');
    if (!this.heartbeatRate.take(box.deviceId)) throw new Refused('RATE_LIMITED', `more than ${HEARTBEATS_PER_MINUTE} heartbeats in a minute`);
    const json = await readJsonBody(req, res);
    const parsed = parseHeartbeatReport(json);
    if (!parsed.ok) throw new Refused('BAD_REQUEST', parsed.text);
    const at = this.now();
    try {
      await this.heartbeatBatch.add({ deviceId: box.deviceId, at, report: parsed.report });
    } catch (error) {
      this.o.log.error('backend: cannot keep a heartbeat', { box: box.deviceId, error: messageOf(error) });
      throw new Refused('BACKEND_UNAVAILABLE', 'the backend cannot record the heartbeat in its journal');
    }
    this.observe('heartbeat', 'success', {});
    try {
      this.o.observer?.heartbeat(box.deviceId, parsed.report, at);
    } catch {
      // The metrics' trouble is not the box's.
    }
    if (!res.headersSent && !res.destroyed) {
      res.writeHead(204, { 'cache-control': 'no-store' });
      res.end();
    }
  }

  private observe(call: ApiCall | 'heartbeat' | null, outcome: CallOutcomeKind, detail: { seconds?: number; refusal?: RefusalCode }): void {
    if (call === null) return;
    try {
      this.o.observer?.call(call, outcome, detail);
    } catch {
      // The metrics' trouble is not the box's.
    }
  }

  /** The policy of contract §8; throws Refused. */
  private police(box: BoxRecord, value: CallRequest): void {
    const id = box.deviceId;
    const { outTradeNo, outRefundNo } = idsOf(value);
    if (outTradeNo !== null && !outTradeNo.startsWith(id)) throw new Refused('NOT_YOUR_ORDER', `out_trade_no ${outTradeNo} does not begin with ${id}`);
    if (outRefundNo !== null && !outRefundNo.startsWith(id)) throw new Refused('NOT_YOUR_ORDER', `out_refund_no ${outRefundNo} does not begin with ${id}`);
    const max = box.maxAmountFen ?? this.o.policy.maxAmountFen;
    if (value.call === 'micropay') {
      if (value.request.deviceInfo !== undefined && value.request.deviceInfo !== id) {
        throw new Refused('NOT_YOUR_ORDER', `device_info ${value.request.deviceInfo} is not ${id}`);
      }
      if (value.request.totalFee > max) throw new Refused('AMOUNT_LIMIT', `total_fee ${value.request.totalFee} is over this box's limit of ${max} fen`);
    }
    if (value.call === 'refund') {
      if ((box.refunds ?? this.o.policy.refunds) !== 'on') throw new Refused('REFUNDS_OFF', `box ${id} may not refund`);
      if (value.request.refundFee > max) throw new Refused('AMOUNT_LIMIT', `refund_fee ${value.request.refundFee} is over this box's limit of ${max} fen`);
    }
    if (value.call === 'downloadbill' && this.o.policy.bills !== 'on') throw new Refused('BILLS_OFF', 'boxes may not download the bill');
  }

  private async forward(value: CallRequest, record: NewCall, res: ServerResponse, log: Logger, arrivedAt: number): Promise<void> {
    // micropay and orderquery share the client's pool: at most one call per connection, or none after 5 s.
    const gated = value.call === 'micropay' || value.call === 'orderquery';
    const release = gated ? await this.gate.acquire(arrivedAt) : () => undefined;
    if (release === null) {
      await this.o.store.refusedCall({ ...record, at: this.now() }, 'NOT_SENT').catch((e: unknown) => log.error('backend: cannot record a call not sent', { error: messageOf(e) }));
      return this.unsent(value, res, log, arrivedAt, 'no connection to WeChat Pay came free in time');
    }
    try {
      await this.forwardHeld(value, record, res, log, arrivedAt);
    } finally {
      release();
    }
  }

  /** Answers a call the backend did not send to WeChat Pay: unknown and unsent, so a micropay ends OFFLINE at once. */
  private unsent(value: CallRequest, res: ServerResponse, log: Logger, arrivedAt: number, why: string): void {
    const ms = Math.round(performance.now() - arrivedAt);
    log.warning('backend: call not sent to WeChat Pay, the box is told so', { why, ms, ...this.gate.load });
    const outcome = { kind: 'unknown', call: value.call, failure: 'NETWORK', message: `the backend did not send it to WeChat Pay: ${why} (${ms} ms)`, ms, origin: null, unsent: true };
    this.answer(res, 200, { outcome });
  }

  private async forwardHeld(value: CallRequest, record: NewCall, res: ServerResponse, log: Logger, arrivedAt: number): Promise<void> {
    let id: number;
    try {
      if (value.call === 'refund') {
        // The merchant's refund policy, checked against the journal and recorded in one step (contract §8).
        const day = dayBounds(businessDay(this.now(), BILL_TIME_ZONE), BILL_TIME_ZONE);
        const started = await this.o.store.startRefund(
          { ...record, call: 'refund', outTradeNo: value.request.outTradeNo, outRefundNo: value.request.outRefundNo, amountFen: value.request.refundFee, claimedTotalFeeFen: value.request.totalFee, at: this.now() },
          { dayFrom: day.startMs, dayTo: day.endMs, dayMaxFen: this.o.policy.refundDayMaxFen ?? DEFAULT_REFUND_DAY_MAX_FEN },
        );
        if (!started.ok) throw new Refused(started.code, started.text);
        id = started.id;
        // WeChat Pay is told the order's amount as the backend charged it, never what the box claims.
        value = { call: 'refund', request: { ...value.request, totalFee: started.totalFeeFen } };
      } else {
        id = await this.o.store.startCall({ ...record, at: this.now() });
      }
    } catch (error) {
      if (error instanceof Refused) throw error;
      log.error('backend: cannot record the call; not sending it', { error: messageOf(error) });
      throw new Refused('BACKEND_UNAVAILABLE', 'the backend cannot record the call in its journal');
    }
    if (!this.gate.inTime(arrivedAt)) {
      // Recording it took too long (a busy journal): too late to send; the box ends the sale at once.
      await this.o.store.finishCall(id, { outcome: 'refused', code: 'NOT_SENT', ms: 0 }).catch((e: unknown) => log.error('backend: cannot record a call not sent', { error: messageOf(e) }));
      return this.unsent(value, res, log, arrivedAt, 'the journal was too slow to record it');
    }
    const started = performance.now();
    const queuedMs = Math.round(started - arrivedAt);
    let outcome: ApiOutcome | BillOutcome;
    const gone = new AbortController();
    const onClose = (): void => {
      if (!res.writableFinished) gone.abort();
    };
    res.once('close', onClose);
    try {
      outcome = await this.upstream(value, record.deviceId, gone.signal);
    } catch (error) {
      // The client checks its arguments before anything is sent, and throws only then.
      await this.o.store.finishCall(id, { outcome: 'refused', code: 'BAD_REQUEST', ms: performance.now() - started }).catch(() => undefined);
      throw new Refused('BAD_REQUEST', messageOf(error));
    } finally {
      res.off('close', onClose);
    }
    const ms = Math.round(performance.now() - started);
    this.observe(value.call, outcome.kind, { seconds: (performance.now() - started) / 1000 });
    const code = outcomeCode(outcome);
    // The outcome goes back even when it cannot be recorded: the box's journal holds the money's truth. So the
    // box does not wait for the record's commit (the call itself was recorded before it was sent); a clean stop
    // waits for every record under way (close).
    this.recording(
      this.o.store.finishCall(id, { outcome: outcome.kind, code, state: stateOf(value, outcome), paidAt: paidAtOf(value, outcome), ms }).catch((error: unknown) => {
        log.error('backend: cannot record the outcome of a call', { error: messageOf(error), outcome: outcome.kind });
      }),
    );
    log.info('backend: forwarded', {
      out_trade_no: record.outTradeNo ?? undefined,
      out_refund_no: record.outRefundNo ?? undefined,
      outcome: outcome.kind,
      err_code: outcome.kind === 'business' ? outcome.errCode : undefined,
      failure: outcome.kind === 'unknown' ? outcome.failure : undefined,
      ms,
      // From the request's arrival to its sending upstream: the pool's wait and the journal's write.
      queued_ms: queuedMs,
    });
    this.answer(res, 200, { outcome });
  }

  private upstream(value: CallRequest, deviceId: string, signal: AbortSignal): Promise<ApiOutcome | BillOutcome> {
    const c = this.o.client;
    switch (value.call) {
      case 'micropay':
        return c.micropay(value.request);
      case 'orderquery':
        return c.orderquery(value.request);
      case 'reverse':
        return c.reverse(value.request);
      case 'refund':
        return c.refund(value.request);
      case 'refundquery':
        return c.refundquery(value.request);
      case 'downloadbill':
        // The box's own trades only, from the one download of the day all boxes share.
        return this.bills.bill(value.request, boxTrades(deviceId), signal, deviceId);
    }
  }

  private answer(res: ServerResponse, status: number, body: unknown): void {
    if (res.headersSent || res.destroyed) return;
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
    res.end(text);
  }
}

/** A box's JSON request body, or a Refused saying what is wrong with it (an oversized one closes the connection). */
async function readJsonBody(req: IncomingMessage, res: ServerResponse): Promise<unknown> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/json(\s*;\s*charset=utf-8)?$/i.test(type)) throw new Refused('BAD_REQUEST', 'content-type must be application/json');
  const raw = await readBody(req);
  if (raw === null) {
    res.setHeader('connection', 'close');
    throw new Refused('BAD_REQUEST', `body larger than ${MAX_REQUEST_BYTES} bytes`);
  }
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    throw new Refused('BAD_REQUEST', 'the body is not JSON');
  }
}

/** The body as text, or null when it is over the cap (reading stops there). */
function readBody(req: IncomingMessage): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (declared > MAX_REQUEST_BYTES) {
      resolve(null);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > MAX_REQUEST_BYTES) {
        req.off('data', onData);
        resolve(null);
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => {
      if (size <= MAX_REQUEST_BYTES) resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.once('error', reject);
  });
}
