/**
 * What the gateway simulator does with one payment code: the payer's wallet outcome and the network or
 * gateway faults on the way. A scenario is keyed by the payment code the payer shows, because that is the
 * only thing a test or the demo controls from the scanner side. What WeChat Pay does with refunds of the
 * order is a `RefundScenario`, carried by the payment code's scenario or set later per out_trade_no.
 */

export type SimCall = 'micropay' | 'orderquery' | 'reverse';
export const SIM_CALLS: readonly SimCall[] = ['micropay', 'orderquery', 'reverse'];

export type RefundCall = 'refund' | 'refundquery';
export const REFUND_CALLS: readonly RefundCall[] = ['refund', 'refundquery'];

/** The daily bill (after-the-sale.md §3): built from the ledger, no faults. */
export type BillCall = 'downloadbill';

/** Every API path the simulator answers. */
/** The trade report (交易保障): taken, checked and recorded, never acted on. */
export type ReportCall = 'report';
export type GatewayCall = SimCall | RefundCall | BillCall | ReportCall;

export type Fault =
  /** Answers normally after `ms` of real time: network latency, not payer time. */
  | { kind: 'delay'; ms: number }
  /** Destroys the socket without acting: nothing charged or reversed. */
  | { kind: 'drop_before' }
  /** Acts (charge / reverse), then destroys the socket without answering. */
  | { kind: 'drop_after' }
  /** Acts, then never answers until the simulator closes: the client sees its own timeout. */
  | { kind: 'hang' }
  /** Acts, answers with a wrong sign. */
  | { kind: 'forge_signature' }
  /** Acts, answers echoing another mch_id, correctly signed. */
  | { kind: 'wrong_mch_id' }
  /** Does not act; return_code=FAIL with `msg` (default "system error"), no sign. */
  | { kind: 'return_fail'; msg?: string }
  /** Does not act; HTTP 500 with an HTML body. */
  | { kind: 'http_500' }
  /** Acts, then answers a body that is not XML. */
  | { kind: 'garbage' }
  /** Acts, then answers the first half of the XML (a complete HTTP answer whose body is cut off). */
  | { kind: 'truncated' }
  /** Acts, then answers the correctly signed XML behind a DOCTYPE with an ENTITY declaration. */
  | { kind: 'dtd' }
  /** micropay: acts (charges per outcome) but answers SYSTEMERROR; orderquery/reverse: answers SYSTEMERROR without acting. */
  | { kind: 'system_error' };

export type FaultKind = Fault['kind'];
export const FAULT_KINDS: readonly FaultKind[] = [
  'delay',
  'drop_before',
  'drop_after',
  'hang',
  'forge_signature',
  'wrong_mch_id',
  'return_fail',
  'http_500',
  'garbage',
  'truncated',
  'dtd',
  'system_error',
];

export type Outcome =
  | 'paid'
  | 'userpaying'
  | 'NOTENOUGH'
  | 'AUTHCODEEXPIRE'
  | 'AUTH_CODE_INVALID'
  | 'AUTH_CODE_ERROR'
  | 'NOTSUPORTCARD'
  | 'TRADE_ERROR'
  | 'BANKERROR';
export const OUTCOMES: readonly Outcome[] = [
  'paid',
  'userpaying',
  'NOTENOUGH',
  'AUTHCODEEXPIRE',
  'AUTH_CODE_INVALID',
  'AUTH_CODE_ERROR',
  'NOTSUPORTCARD',
  'TRADE_ERROR',
  'BANKERROR',
];

export interface Scenario {
  /**
   * What the payer's wallet does with this payment code. `BANKERROR`: micropay answers BANKERROR although
   * it charged (the order is SUCCESS, as with a `system_error` fault).
   */
  outcome: Outcome;
  /** For 'userpaying': the payer confirms after this many ms of simulator clock time (undefined = never). */
  confirmAfterMs?: number;
  /** For 'userpaying': the payer cancels in WeChat after this many ms: trade_state PAYERROR. */
  cancelAfterMs?: number;
  /** Reverse answers SUCCESS with recall=Y this many times before it really reverses. */
  recallTimes?: number;
  /** Faults per call; each entry applies to the next `times` calls of that kind for this order (default 1). */
  faults?: Partial<Record<SimCall, Array<Fault & { times?: number }>>>;
  /** What WeChat Pay does with refunds of orders paid with this code (default: the simulator's default refund scenario). */
  refund?: RefundScenario;
}

/**
 * Accepted outcomes are named by the refund_status the refund ends in; it is PROCESSING until then. The
 * others are err_codes that refuse the refund: nothing is recorded, nothing refunded.
 * - `SUCCESS`, `REFUNDCLOSE`, `CHANGE`: that status `settleAfterMs` after the request (default 0).
 * - `PROCESSING`: stays PROCESSING; SUCCESS only once `settleAfterMs` has passed (default never).
 * - `NOTENOUGH`: the merchant's available balance cannot cover the refund (not the payer's).
 * - `TRADE_OVERDUE`: refused as if the order were older than a year (which the simulator also enforces by its clock).
 * - `USER_ACCOUNT_ABNORMAL`: the payer's account cannot take refunds (closed or frozen).
 */
export type RefundOutcome = 'SUCCESS' | 'PROCESSING' | 'REFUNDCLOSE' | 'CHANGE' | 'NOTENOUGH' | 'TRADE_OVERDUE' | 'USER_ACCOUNT_ABNORMAL';
export const REFUND_OUTCOMES: readonly RefundOutcome[] = [
  'SUCCESS',
  'PROCESSING',
  'REFUNDCLOSE',
  'CHANGE',
  'NOTENOUGH',
  'TRADE_OVERDUE',
  'USER_ACCOUNT_ABNORMAL',
];

/** err_codes after which WeChat Pay asks for the same refund again later (after-the-sale.md §1). */
export type RefundRetryCode = 'FREQUENCY_LIMITED' | 'INVALID_REQ_TOO_MUCH' | 'BIZERR_NEED_RETRY' | 'SYSTEMERROR';
export const REFUND_RETRY_CODES: readonly RefundRetryCode[] = ['FREQUENCY_LIMITED', 'INVALID_REQ_TOO_MUCH', 'BIZERR_NEED_RETRY', 'SYSTEMERROR'];

/**
 * What WeChat Pay does with the refunds of one order. It applies to refunds requested after it was set; a
 * refund already recorded keeps the scenario it was recorded under.
 */
export interface RefundScenario {
  outcome: RefundOutcome;
  /** Simulator clock ms from the request until the refund leaves PROCESSING; see RefundOutcome. */
  settleAfterMs?: number;
  /**
   * The first `times` (default 1) requests for a new refund of the order are refused with `code`, nothing
   * recorded; a retry after that goes through. SYSTEMERROR here is the variant that did not accept.
   */
  refuseFirst?: { code: RefundRetryCode; times?: number };
  /**
   * WeChat Pay wants refunds of one order at least 1 minute apart. Enforced only when set, so that tests
   * need not wait: a new refund sooner than this after the order's previous one is refused FREQUENCY_LIMITED.
   */
  minIntervalMs?: number;
  /** Faults on refund and refundquery calls about this order, as for Scenario.faults. `system_error` on refund accepts the refund and answers SYSTEMERROR. */
  faults?: Partial<Record<RefundCall, Array<Fault & { times?: number }>>>;
}

function nonNegative(value: unknown, name: string): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !(value >= 0) || Number.isNaN(value)) {
    throw new TypeError(`scenario ${name} must be a number >= 0, got ${String(value)}`);
  }
}

type FaultLists<C extends string> = Partial<Record<C, Array<Fault & { times?: number }>>>;

function checkFaults<C extends string>(given: FaultLists<C>, calls: readonly C[], prefix: string): FaultLists<C> {
  const faults: FaultLists<C> = {};
  for (const [call, list] of Object.entries(given) as Array<[string, unknown]>) {
    if (!calls.includes(call as C)) throw new TypeError(`${prefix}faults for unknown call: ${call}`);
    if (list === undefined) continue;
    if (!Array.isArray(list)) throw new TypeError(`${prefix}faults.${call} must be an array`);
    faults[call as C] = Object.freeze(
      (list as Array<Fault & { times?: number }>).map((fault, i) => {
        if (!FAULT_KINDS.includes(fault?.kind)) throw new TypeError(`${prefix}faults.${call}[${i}]: unknown kind ${String(fault?.kind)}`);
        if (fault.kind === 'delay') nonNegative(fault.ms, `${prefix}faults.${call}[${i}].ms`);
        if (fault.times !== undefined && !(fault.times >= 1)) {
          throw new TypeError(`${prefix}faults.${call}[${i}].times must be >= 1 (Infinity allowed)`);
        }
        return Object.freeze({ ...fault });
      }),
    ) as Array<Fault & { times?: number }>;
  }
  return Object.freeze(faults);
}

/** Checks a scenario and returns a frozen deep copy; throws TypeError naming the first bad part. */
export function checkScenario(scenario: Scenario): Readonly<Scenario> {
  if (typeof scenario !== 'object' || scenario === null) throw new TypeError('scenario must be an object');
  if (!OUTCOMES.includes(scenario.outcome)) throw new TypeError(`unknown scenario outcome: ${String(scenario.outcome)}`);
  nonNegative(scenario.confirmAfterMs, 'confirmAfterMs');
  nonNegative(scenario.cancelAfterMs, 'cancelAfterMs');
  nonNegative(scenario.recallTimes, 'recallTimes');
  const copy: Scenario = { outcome: scenario.outcome };
  if (scenario.confirmAfterMs !== undefined) copy.confirmAfterMs = scenario.confirmAfterMs;
  if (scenario.cancelAfterMs !== undefined) copy.cancelAfterMs = scenario.cancelAfterMs;
  if (scenario.recallTimes !== undefined) copy.recallTimes = scenario.recallTimes;
  if (scenario.faults !== undefined) copy.faults = checkFaults(scenario.faults, SIM_CALLS, '');
  if (scenario.refund !== undefined) copy.refund = checkRefundScenario(scenario.refund, 'refund.');
  return Object.freeze(copy);
}

/** Checks a refund scenario and returns a frozen deep copy; throws TypeError naming the first bad part. */
export function checkRefundScenario(scenario: RefundScenario, prefix = ''): Readonly<RefundScenario> {
  if (typeof scenario !== 'object' || scenario === null) throw new TypeError(`${prefix || 'refund '}scenario must be an object`);
  if (!REFUND_OUTCOMES.includes(scenario.outcome)) throw new TypeError(`unknown ${prefix}outcome: ${String(scenario.outcome)}`);
  nonNegative(scenario.settleAfterMs, `${prefix}settleAfterMs`);
  nonNegative(scenario.minIntervalMs, `${prefix}minIntervalMs`);
  const copy: RefundScenario = { outcome: scenario.outcome };
  if (scenario.settleAfterMs !== undefined) copy.settleAfterMs = scenario.settleAfterMs;
  if (scenario.minIntervalMs !== undefined) copy.minIntervalMs = scenario.minIntervalMs;
  if (scenario.refuseFirst !== undefined) {
    const { code, times } = scenario.refuseFirst ?? {};
    if (!REFUND_RETRY_CODES.includes(code)) throw new TypeError(`${prefix}refuseFirst.code must be one of ${REFUND_RETRY_CODES.join(', ')}, got ${String(code)}`);
    if (times !== undefined && !(Number.isInteger(times) && times >= 1)) throw new TypeError(`${prefix}refuseFirst.times must be an integer >= 1, got ${String(times)}`);
    copy.refuseFirst = Object.freeze(times === undefined ? { code } : { code, times });
  }
  if (scenario.faults !== undefined) copy.faults = checkFaults(scenario.faults, REFUND_CALLS, prefix);
  return Object.freeze(copy);
}

/**
 * A well-formed WeChat payment code (18 digits starting 10-15) made from a number, for tests and the
 * demo. Codes from different `n` differ; the simulator treats every code as single-use.
 */
export function paymentCode(n: number, prefix: '10' | '11' | '12' | '13' | '14' | '15' = '13'): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new TypeError(`paymentCode needs an integer >= 0, got ${n}`);
  return prefix + String(n).padStart(16, '0');
}

/** Named scenarios for the demo's scripted sales (and readable tests). */
export const SCENARIOS = {
  paid: { outcome: 'paid' },
  /** The payer types the password after 8 s. */
  password: { outcome: 'userpaying', confirmAfterMs: 8_000 },
  /** The payer never confirms: the box must reverse. */
  passwordTimeout: { outcome: 'userpaying' },
  /** The payer cancels in WeChat after 6 s. */
  payerCancels: { outcome: 'userpaying', cancelAfterMs: 6_000 },
  notEnough: { outcome: 'NOTENOUGH' },
  expiredCode: { outcome: 'AUTHCODEEXPIRE' },
  /** Charged, but micropay answers BANKERROR: only orderquery tells the truth. */
  bankError: { outcome: 'BANKERROR' },
  /** Charged, but the answer to micropay is lost on the way back. */
  lostAnswer: { outcome: 'paid', faults: { micropay: [{ kind: 'drop_after' }] } },
  /** Never confirms, and reverse asks to be called again twice. */
  reverseRecall: { outcome: 'userpaying', recallTimes: 2 },
} satisfies Record<string, Scenario>;

/** Named refund scenarios (after-the-sale.md §1-2), for `Scenario.refund`, setRefundScenario and the demo. */
export const REFUND_SCENARIOS = {
  refunded: { outcome: 'SUCCESS' },
  /** Accepted; the money reaches the payer's WeChat balance 20 minutes later. */
  toBalance: { outcome: 'SUCCESS', settleAfterMs: 20 * 60_000 },
  /** Accepted; a bank card takes about 3 working days: PROCESSING for a long time. */
  toBankCard: { outcome: 'PROCESSING', settleAfterMs: 5 * 24 * 3600_000 },
  /** Accepted, never finishes. */
  stuck: { outcome: 'PROCESSING' },
  /** Accepted, then closed by WeChat Pay: nothing refunded. */
  closed: { outcome: 'REFUNDCLOSE', settleAfterMs: 60_000 },
  /** Accepted, but the payer's card could not take it: the merchant must handle it in the merchant platform. */
  change: { outcome: 'CHANGE', settleAfterMs: 60_000 },
  /** Accepted, but the answer says SYSTEMERROR. */
  systemError: { outcome: 'SUCCESS', faults: { refund: [{ kind: 'system_error' }] } },
  /** Accepted, but the connection drops before the answer. */
  lostAnswer: { outcome: 'SUCCESS', faults: { refund: [{ kind: 'drop_after' }] } },
  /** The merchant's available balance is short: every new refund of the order is refused. */
  merchantShort: { outcome: 'NOTENOUGH' },
  /** Refused FREQUENCY_LIMITED twice, then accepted. */
  frequencyLimited: { outcome: 'SUCCESS', refuseFirst: { code: 'FREQUENCY_LIMITED', times: 2 } },
  /** WeChat Pay's one-minute spacing between refunds of one order, enforced. */
  oneMinuteApart: { outcome: 'SUCCESS', minIntervalMs: 60_000 },
  overdue: { outcome: 'TRADE_OVERDUE' },
} satisfies Record<string, RefundScenario>;
