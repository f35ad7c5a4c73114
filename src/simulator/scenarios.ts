/**
 * What the gateway simulator does with one payment code: the payer's wallet outcome and the network or
 * gateway faults on the way. A scenario is keyed by the payment code the payer shows, because that is the
 * only thing a test or the demo controls from the scanner side.
 */

export type SimCall = 'micropay' | 'orderquery' | 'reverse';
export const SIM_CALLS: readonly SimCall[] = ['micropay', 'orderquery', 'reverse'];

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
}

function nonNegative(value: unknown, name: string): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !(value >= 0) || Number.isNaN(value)) {
    throw new TypeError(`scenario ${name} must be a number >= 0, got ${String(value)}`);
  }
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
  if (scenario.faults !== undefined) {
    const faults: NonNullable<Scenario['faults']> = {};
    for (const [call, list] of Object.entries(scenario.faults)) {
      if (!SIM_CALLS.includes(call as SimCall)) throw new TypeError(`faults for unknown call: ${call}`);
      if (list === undefined) continue;
      if (!Array.isArray(list)) throw new TypeError(`faults.${call} must be an array`);
      faults[call as SimCall] = list.map((fault, i) => {
        if (!FAULT_KINDS.includes(fault?.kind)) throw new TypeError(`faults.${call}[${i}]: unknown kind ${String(fault?.kind)}`);
        if (fault.kind === 'delay') nonNegative(fault.ms, `faults.${call}[${i}].ms`);
        if (fault.times !== undefined && !(fault.times >= 1)) {
          throw new TypeError(`faults.${call}[${i}].times must be >= 1 (Infinity allowed)`);
        }
        return Object.freeze({ ...fault });
      });
      Object.freeze(faults[call as SimCall]);
    }
    copy.faults = Object.freeze(faults);
  }
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
