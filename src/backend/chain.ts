import type { Logger } from '../log.js';
import type { ApiCall, ApiOutcome, BillOutcome, BillType } from '../wechatpay/client.js';
import { BackendGateway, type BackendGatewayOptions } from './gateway.js';
import type { MicropayRequest, OrderRequest, RefundQueryRequest, RefundRequest } from './protocol.js';

/**
 * A box with several backends (contract §2 `SCANBOX_BACKEND`, several comma-separated origins; §8 "A chain"):
 * the same gateway seam as BackendGateway, over one BackendGateway per origin.
 *
 * - The box keeps to the backend that works (the first at start) and sends every call there.
 * - A call that provably never left the box (`unsent`: no connection could be made, or the backend's
 *   certificate failed in the handshake) goes to the next backend at once, and that one becomes the current
 *   one: the sale goes on. Each backend is tried at most once per call.
 * - Any other failure (a timeout, a connection cut after the request went out, an answer that cannot be read)
 *   is the call's outcome, unchanged: the engine follows the money rules (it queries, through whichever backend
 *   works then, and reverses what stays unknown). The next call goes to the next backend, since this one could
 *   not be relied on.
 * - A refusal (`BACKEND_UNAVAILABLE` and the rest) is an answer from a backend that sent nothing upstream: the
 *   outcome as BackendGateway makes it, unchanged (all the backends share one database; one that cannot record
 *   speaks for the others).
 */

export interface BackendState {
  origin: string;
  current: boolean;
  /** ok: its last call was answered; unreachable: its last call failed in transport; unused: not asked yet. */
  state: 'ok' | 'unreachable' | 'unused';
  lastOkAt: number | null;
  lastFailureAt: number | null;
  lastFailure: string | null;
}

type Gateway = Pick<BackendGateway, 'micropay' | 'orderquery' | 'reverse' | 'refund' | 'refundquery' | 'downloadbill' | 'warm' | 'cool' | 'close'>;

export class BackendChain {
  readonly origin: string;
  private readonly gateways: Gateway[];
  private readonly states: BackendState[];
  private current = 0;
  private readonly log: Logger | undefined;
  private readonly now: () => number;

  constructor(options: Omit<BackendGatewayOptions, 'origin'> & { origins: readonly string[]; now?: () => number; make?: (origin: string) => Gateway }) {
    if (options.origins.length === 0) throw new TypeError('origins must name at least one backend');
    const make = options.make ?? ((origin: string) => new BackendGateway({ ...options, origin }));
    this.gateways = options.origins.map(make);
    this.states = options.origins.map((origin) => ({ origin, current: false, state: 'unused', lastOkAt: null, lastFailureAt: null, lastFailure: null }));
    this.states[0]!.current = true;
    this.origin = options.origins.join(',');
    this.log = options.log;
    this.now = options.now ?? Date.now;
  }

  /** Every backend's state, for `scanbox status` and `selftest`. */
  backends(): BackendState[] {
    return this.states.map((s) => ({ ...s }));
  }

  micropay(req: MicropayRequest): Promise<ApiOutcome> {
    return this.call('micropay', (g) => g.micropay(req));
  }

  orderquery(req: OrderRequest): Promise<ApiOutcome> {
    return this.call('orderquery', (g) => g.orderquery(req));
  }

  reverse(req: OrderRequest): Promise<ApiOutcome> {
    return this.call('reverse', (g) => g.reverse(req));
  }

  refund(req: RefundRequest): Promise<ApiOutcome> {
    return this.call('refund', (g) => g.refund(req));
  }

  refundquery(req: RefundQueryRequest): Promise<ApiOutcome> {
    return this.call('refundquery', (g) => g.refundquery(req));
  }

  downloadbill(req: { billDate: string; billType?: BillType; gzip?: boolean }): Promise<BillOutcome> {
    return this.call('downloadbill', (g) => g.downloadbill(req));
  }

  warm(): Promise<void> {
    return this.gateways[this.current]!.warm();
  }

  cool(): Promise<void> {
    return Promise.all(this.gateways.map((g) => g.cool())).then(() => undefined);
  }

  close(): Promise<void> {
    return Promise.all(this.gateways.map((g) => g.close())).then(() => undefined);
  }

  private moveOn(from: number, why: string): void {
    if (this.current !== from) return;
    const next = (from + 1) % this.gateways.length;
    this.states[from]!.current = false;
    this.states[next]!.current = true;
    this.current = next;
    this.log?.warning('backend cannot be relied on; moving to the next one', { from: this.states[from]!.origin, to: this.states[next]!.origin, why });
  }

  private async call<O extends ApiOutcome | BillOutcome>(call: ApiCall, send: (g: Gateway) => Promise<O>): Promise<O> {
    const first = this.current;
    let outcome: O | undefined;
    for (let tried = 0; tried < this.gateways.length; tried++) {
      const index = (first + tried) % this.gateways.length;
      const state = this.states[index]!;
      outcome = await send(this.gateways[index]!);
      if (outcome.kind !== 'unknown' || (outcome.failure !== 'NETWORK' && outcome.failure !== 'TIMEOUT') || outcome.origin !== null) {
        // An answer from this backend (a refusal included): it works.
        state.state = 'ok';
        state.lastOkAt = this.now();
        this.setCurrent(index);
        return outcome;
      }
      state.state = 'unreachable';
      state.lastFailureAt = this.now();
      state.lastFailure = `${outcome.failure}: ${outcome.message}`.slice(0, 300);
      this.moveOn(index, outcome.failure);
      // Only a call that provably never left the box may be sent again, to the next backend.
      if (!outcome.unsent) return outcome;
      if (tried + 1 < this.gateways.length) this.log?.info('call never left the box; sending it to the next backend', { call, to: this.states[(index + 1) % this.gateways.length]!.origin });
    }
    return outcome!;
  }

  private setCurrent(index: number): void {
    if (this.current === index) return;
    this.states[this.current]!.current = false;
    this.states[index]!.current = true;
    this.current = index;
  }
}
