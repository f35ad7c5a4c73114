import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { systemClock } from '../../src/clock.js';
import { Journal, type Sale } from '../../src/journal/journal.js';
import type { Refund } from '../../src/journal/refunds.js';
import { isFinal } from '../../src/journal/states.js';
import { Rig } from '../../src/simulator/rig.js';
import { paymentCode, type GatewayCall, type RefundScenario, type Scenario } from '../../src/simulator/scenarios.js';
import { checkMoneyRules, type LaneCounts } from './money-rules.js';

/**
 * The crash matrix at daemon level: sales with random simulator scenarios are driven through the register
 * and scanner ptys of the real `scanbox run`, and the daemon is killed with SIGKILL (a power cut) at every
 * state boundary of a sale and at random instants, then started again on the same journal, again and again,
 * also while it is recovering. At the end the simulator's ledger, the journal and what the register heard are
 * checked against the money rules (contract §6):
 *
 * - money taken => the register got a PAID line for that REF and out_trade_no, and the journal says paid
 *   (or the money was given back);
 * - one REF never holds two charges;
 * - every sale is final once recovery ran and the reversals drained; PRAGMA quick_check is ok;
 * - every PAID line the register got is backed by a charge that was not reversed;
 * - refunds (§6.6): one RID refunds at most once under one out_refund_no, WeChat Pay holds no refund the
 *   journal does not know, never more than the sale, REFUNDED and FAILED lines are the truth, and nothing is
 *   left requested or submitted at the end.
 *
 * Refunds: after some PAID sales the register sends `REFUND REF AMOUNT RID` (part of the sale, all of it, the
 * same RID twice, a second RID for the rest, more than is left), each new RID with a refund scenario of its
 * own (accepted, SYSTEMERROR although accepted, the connection dropped after accepting, PROCESSING then
 * SUCCESS, the merchant's balance short, FREQUENCY_LIMITED once). After a kill the register sends the same
 * REFUND line again, as a register that lost the answer would.
 *
 * Boundaries are found from the daemon's own log lines ('sale opened', 'payment code scanned', 'micropay
 * answered', 'payer must confirm', 'orderquery answered', '...; reversing', 'reversed at WeChat Pay',
 * 'paid', 'recovering a sale ...', 'refund recorded', 'refund accepted by WeChat Pay', 'recovering a refund
 * ...') and from requests reaching the simulator (a request "in flight": the simulator acts on it after the
 * daemon is dead).
 *
 * Time: WeChat Pay's 15 s no-reverse rule is fixed in the engine, so every sale that ends in a reversal
 * holds its daemon for 15 s after the order (in the foreground, or in recovery before READY). The matrix
 * therefore runs several counters ("lanes") at once, each its own simulator, ptys, journal and daemon, and
 * inside a lane kills the daemon again while recovery waits out those 15 s (the wait is measured from the
 * order, so a restart costs only its start-up). Everything random (scenarios, kill points, delays, retries)
 * comes from a PRNG seeded with `seed`, drawn in a fixed order; timing is real, so the exact instants vary.
 *
 * The rules themselves are checked by money-rules.ts, a pure function.
 *
 * Test tooling, not part of the box: used by test/e2e/crash-matrix.test.ts (about 30 kills) and by
 * `npm run soak` (300 kills by default), which builds it into build/tooling/ (test/tooling/tsconfig.json).
 */

export interface CrashMatrixOptions {
  /** At least this many SIGKILLs in total (default 300). */
  kills?: number;
  seed?: number;
  /** Progress lines. */
  log?: (line: string) => void;
  /** Counters run at once (default: one per 8 kills, 2 to 8). */
  lanes?: number;
  /** On a violation, the lane's journal, daemon log and register transcript are copied here. */
  keepDir?: string;
}

export interface CrashMatrixResult {
  /** Sales in the journals (every attempt: a REF tried again after FAILED is a new sale). */
  sales: number;
  kills: number;
  paid: number;
  reversed: number;
  failed: number;
  /** Ledger orders still charged at the end, each with its PAID line on the register. */
  chargedAndReported: number;
  violations: string[];
  /** How often each kill point was hit. */
  killsAt: Record<string, number>;
  /** Charged at some point and given back by a reversal (the box restarted, or the sale was not confirmed). */
  refunded: number;
  /** Refunds in the journals (one per RID), of them accepted by WeChat Pay, and refused by it. */
  refunds: number;
  refundsAccepted: number;
  refundsFailed: number;
  lanes: number;
  seconds: number;
}

const DEVICE_ID = 'BENCH01';
const ENV = {
  SCANBOX_USERPAYING_POLL_S: '1',
  SCANBOX_USERPAYING_TIMEOUT_S: '5',
  SCANBOX_SCAN_TIMEOUT_S: '5',
  SCANBOX_LOG_LEVEL: 'info',
  SCANBOX_DEVICE_ID: DEVICE_ID,
  // The register may refund, and the day's cap never stops a lane (its highest value).
  SCANBOX_REFUNDS: 'register',
  SCANBOX_REFUND_DAY_MAX: '100000000',
};

// ---- the seeded PRNG ----

class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** mulberry32: [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }

  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  }
}

function mix(seed: number, lane: number): number {
  let h = (seed ^ Math.imul(lane + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

// ---- kill points ----

/** Kill points during a sale (the first kill of a sale). */
const SALE_POINTS = [
  'after PAY',
  'sale opened',
  'payment code scanned',
  'micropay request',
  'micropay answered',
  'micropay result unknown',
  'payer must confirm',
  'orderquery request',
  'orderquery answered',
  'reversing',
  'reverse request',
  'recall=Y',
  'reversed',
  'paid',
  'after scan',
] as const;
type SalePoint = (typeof SALE_POINTS)[number];

/** Kill points while the restarted daemon recovers the sale (before READY). */
const RECOVERY_POINTS = ['after start', 'recovering', 'recovery orderquery', 'recovery reverse', 'recovery recall=Y', 'recovery reversed'] as const;
type RecoveryPoint = (typeof RECOVERY_POINTS)[number];
const EARLY_RECOVERY_POINTS: readonly RecoveryPoint[] = ['after start', 'recovering', 'recovering', 'recovery orderquery'];
const LATE_RECOVERY_POINTS: readonly RecoveryPoint[] = ['recovery reverse', 'recovery recall=Y', 'recovery reversed'];

/** Kill points during a REFUND (the first kill of a refund). */
const REFUND_POINTS = ['refund recorded', 'refund request', 'refund accepted', 'refundquery request'] as const;
type RefundPoint = (typeof REFUND_POINTS)[number];
/** While the restarted daemon recovers a refund before READY; 'refund request' and 'refundquery request' count under their names. */
type RefundRecoveryPoint = 'recovering a refund' | 'refund request' | 'refundquery request';
/** Recovery sends a `requested` refund at once; it asks about a `submitted` one first, then sends it again. */
const REFUND_RECOVERY_CHOICES: Record<'requested' | 'submitted', readonly RefundRecoveryPoint[]> = {
  requested: ['recovering a refund', 'recovering a refund', 'refund request'],
  submitted: ['recovering a refund', 'refundquery request', 'refund request'],
};
const ALL_REFUND_POINTS: readonly string[] = [...REFUND_POINTS, 'recovering a refund'];

type KillPoint = SalePoint | RecoveryPoint | 'idle' | RefundPoint | RefundRecoveryPoint;

interface KillSpec {
  at: KillPoint;
  delayMs: number;
}

/** What a kill point is about: a sale (its REF and out_trade_no), or a refund of it (its RID too). */
interface Target {
  ref: string;
  rid?: string;
  otn: () => string | null;
}

interface LogLine {
  message: string;
  ref: string | null;
  rid: string | null;
}

/** What a log line must say for a log-based kill point (the line must also carry the sale's ref, or the refund's rid). */
const LOG_POINTS: Partial<Record<KillPoint, (message: string) => boolean>> = {
  'sale opened': (m) => m === 'sale opened',
  'payment code scanned': (m) => m.startsWith('payment code scanned'),
  'micropay answered': (m) => m === 'micropay answered',
  'micropay result unknown': (m) => m.startsWith('micropay result unknown'),
  'payer must confirm': (m) => m.startsWith('payer must confirm'),
  'orderquery answered': (m) => m === 'orderquery answered',
  reversing: (m) => m.endsWith('; reversing') || m === 'cashier cancelled the sale',
  'recall=Y': (m) => m.startsWith('WeChat Pay asks to call reverse again'),
  reversed: (m) => m.startsWith('reversed at WeChat Pay'),
  paid: (m) => m === 'paid',
  recovering: (m) => m.startsWith('recovering a sale'),
  'recovery recall=Y': (m) => m.startsWith('WeChat Pay asks to call reverse again'),
  'recovery reversed': (m) => m.startsWith('reversed at WeChat Pay'),
  'refund recorded': (m) => m === 'refund recorded',
  // Also '... (found by refundquery)', after an answer that was lost or said SYSTEMERROR.
  'refund accepted': (m) => m.startsWith('refund accepted by WeChat Pay'),
  'recovering a refund': (m) => m.startsWith('recovering a refund'),
};

/**
 * Requests "in flight". refund carries the sale's out_trade_no; refundquery only the out_refund_no, so any
 * refundquery of the lane counts (one thing at a time: before READY it is recovery's, else the REFUND's or
 * the queue's following an accepted one).
 */
const REQUEST_POINTS: Partial<Record<KillPoint, GatewayCall>> = {
  'micropay request': 'micropay',
  'orderquery request': 'orderquery',
  'reverse request': 'reverse',
  'recovery orderquery': 'orderquery',
  'recovery reverse': 'reverse',
  'refund request': 'refund',
  'refundquery request': 'refundquery',
};

/** Time-based points start their delay when the lane reaches the mark. */
const TIME_POINTS: Partial<Record<KillPoint, 'pay' | 'scan' | 'start' | 'idle'>> = {
  'after PAY': 'pay',
  'after scan': 'scan',
  'after start': 'start',
  idle: 'idle',
};

// ---- sale kinds ----

type Kind =
  | 'paid'
  | 'slowMicropay'
  | 'confirm'
  | 'never'
  | 'payerCancel'
  | 'recall'
  | 'reverseLost'
  | 'notEnough'
  | 'systemError'
  | 'lostAnswer'
  | 'bankError'
  | 'queryDrop'
  | 'cancelScan'
  | 'cancelPassword'
  | 'cancelPaying'
  | 'reverseError'
  | 'alipay'
  | 'noScan';

interface KindSpec {
  scenario: (r: Rng) => Scenario;
  scan: 'wechat' | 'alipay' | 'none';
  cancel?: 'scan' | 'password' | 'paying';
  /** `PAID` or `FAILED CODE`: the final line of the sale when nothing is killed. */
  expect: (scenario: Scenario) => string;
  /** Kill points the sale passes through. */
  passes: readonly SalePoint[];
  /** Costs no 15 s reversal wait or scan timeout. */
  cheap: boolean;
}

const BEFORE_SCAN: readonly SalePoint[] = ['after PAY', 'sale opened'];
const MICROPAY: readonly SalePoint[] = [...BEFORE_SCAN, 'payment code scanned', 'micropay request', 'micropay answered', 'after scan'];
const PASSWORD: readonly SalePoint[] = [...MICROPAY, 'payer must confirm', 'orderquery request', 'orderquery answered'];
const REVERSAL: readonly SalePoint[] = ['reversing', 'reverse request', 'reversed'];
const UNKNOWN: readonly SalePoint[] = [...MICROPAY, 'micropay result unknown', 'orderquery request', 'orderquery answered', 'paid'];

const KINDS: Record<Kind, KindSpec> = {
  paid: { scenario: () => ({ outcome: 'paid' }), scan: 'wechat', expect: () => 'PAID', passes: [...MICROPAY, 'paid'], cheap: true },
  slowMicropay: {
    scenario: (r) => ({ outcome: 'paid', faults: { micropay: [{ kind: 'delay', ms: r.int(200, 900) }] } }),
    scan: 'wechat',
    expect: () => 'PAID',
    passes: [...MICROPAY, 'paid'],
    cheap: true,
  },
  confirm: {
    scenario: (r) => ({ outcome: 'userpaying', confirmAfterMs: r.int(300, 2500) }),
    scan: 'wechat',
    expect: () => 'PAID',
    passes: [...PASSWORD, 'paid'],
    cheap: true,
  },
  queryDrop: {
    scenario: (r) => ({ outcome: 'userpaying', confirmAfterMs: r.int(300, 2000), faults: { orderquery: [{ kind: 'drop_before' }] } }),
    scan: 'wechat',
    expect: () => 'PAID',
    passes: [...PASSWORD, 'paid'],
    cheap: true,
  },
  never: { scenario: () => ({ outcome: 'userpaying' }), scan: 'wechat', expect: () => 'FAILED TIMEOUT_REVERSED', passes: [...PASSWORD, ...REVERSAL], cheap: false },
  payerCancel: {
    scenario: (r) => ({ outcome: 'userpaying', cancelAfterMs: r.int(300, 2500) }),
    scan: 'wechat',
    expect: () => 'FAILED REVERSED',
    passes: [...PASSWORD, ...REVERSAL],
    cheap: false,
  },
  recall: {
    scenario: (r) => ({ outcome: 'userpaying', recallTimes: r.int(1, 3) }),
    scan: 'wechat',
    // Three foreground attempts; after them the register hears REVERSE_PENDING and the queue goes on.
    expect: (s) => ((s.recallTimes ?? 0) >= 3 ? 'FAILED REVERSE_PENDING' : 'FAILED TIMEOUT_REVERSED'),
    passes: [...PASSWORD, ...REVERSAL, 'recall=Y'],
    cheap: false,
  },
  reverseLost: {
    scenario: () => ({ outcome: 'userpaying', faults: { reverse: [{ kind: 'drop_after' }] } }),
    scan: 'wechat',
    expect: () => 'FAILED TIMEOUT_REVERSED',
    passes: [...PASSWORD, ...REVERSAL],
    cheap: false,
  },
  notEnough: { scenario: () => ({ outcome: 'NOTENOUGH' }), scan: 'wechat', expect: () => 'FAILED NOTENOUGH', passes: MICROPAY, cheap: true },
  systemError: {
    scenario: () => ({ outcome: 'paid', faults: { micropay: [{ kind: 'system_error' }] } }),
    scan: 'wechat',
    expect: () => 'PAID',
    passes: UNKNOWN,
    cheap: true,
  },
  lostAnswer: {
    scenario: () => ({ outcome: 'paid', faults: { micropay: [{ kind: 'drop_after' }] } }),
    scan: 'wechat',
    expect: () => 'PAID',
    passes: UNKNOWN,
    cheap: true,
  },
  bankError: { scenario: () => ({ outcome: 'BANKERROR' }), scan: 'wechat', expect: () => 'PAID', passes: UNKNOWN, cheap: true },
  cancelScan: { scenario: () => ({ outcome: 'paid' }), scan: 'none', cancel: 'scan', expect: () => 'FAILED CANCELLED', passes: BEFORE_SCAN, cheap: true },
  cancelPassword: {
    scenario: () => ({ outcome: 'userpaying' }),
    scan: 'wechat',
    cancel: 'password',
    expect: () => 'FAILED CANCELLED',
    passes: [...MICROPAY, 'payer must confirm', 'reversing', 'reverse request', 'reversed'],
    cheap: false,
  },
  cancelPaying: {
    // CANCEL while micropay is in flight: the answer (paid) is taken, then the order is reversed.
    scenario: (r) => ({ outcome: 'paid', faults: { micropay: [{ kind: 'delay', ms: r.int(400, 900) }] } }),
    scan: 'wechat',
    cancel: 'paying',
    expect: () => 'FAILED CANCELLED',
    passes: [...MICROPAY, 'reversing', 'reverse request', 'reversed'],
    cheap: false,
  },
  reverseError: {
    scenario: (r) => ({ outcome: 'userpaying', faults: { reverse: [{ kind: 'system_error', times: r.int(1, 2) }] } }),
    scan: 'wechat',
    expect: () => 'FAILED TIMEOUT_REVERSED',
    passes: [...PASSWORD, ...REVERSAL],
    cheap: false,
  },
  alipay: { scenario: () => ({ outcome: 'paid' }), scan: 'alipay', expect: () => 'FAILED NOT_WECHAT_CODE', passes: BEFORE_SCAN, cheap: true },
  noScan: { scenario: () => ({ outcome: 'paid' }), scan: 'none', expect: () => 'FAILED NO_SCAN', passes: BEFORE_SCAN, cheap: false },
};
const KIND_NAMES = Object.keys(KINDS) as Kind[];
const CHEAP_KINDS = KIND_NAMES.filter((k) => KINDS[k].cheap);
const COSTLY_KINDS = KIND_NAMES.filter((k) => !KINDS[k].cheap);

// ---- refunds ----

type RefundKind = 'accepted' | 'systemError' | 'lostAnswer' | 'processing' | 'notEnough' | 'frequencyLimited';

interface RefundKindSpec {
  /** What WeChat Pay does with the RID's refund; `settleMs` is a drawn PROCESSING time. */
  scenario: (settleMs: number) => RefundScenario;
  /** The register's final line for a new RID within the sale's amount when nothing is killed. */
  expect: 'REFUNDED' | 'FAILED NOTENOUGH' | 'FAILED REFUND_PENDING';
  /** Kill points the REFUND passes through before its final line. */
  passes: readonly RefundPoint[];
}

const REFUND_KINDS: Record<RefundKind, RefundKindSpec> = {
  accepted: { scenario: () => ({ outcome: 'SUCCESS' }), expect: 'REFUNDED', passes: ['refund recorded', 'refund request', 'refund accepted'] },
  // Accepted, but answered SYSTEMERROR / the connection dropped: refundquery finds it.
  systemError: {
    scenario: () => ({ outcome: 'SUCCESS', faults: { refund: [{ kind: 'system_error' }] } }),
    expect: 'REFUNDED',
    passes: ['refund recorded', 'refund request', 'refundquery request', 'refund accepted'],
  },
  lostAnswer: {
    scenario: () => ({ outcome: 'SUCCESS', faults: { refund: [{ kind: 'drop_after' }] } }),
    expect: 'REFUNDED',
    passes: ['refund recorded', 'refund request', 'refundquery request', 'refund accepted'],
  },
  // Accepted; refundquery says PROCESSING until `settleMs` has passed, then SUCCESS (the queue follows it).
  processing: {
    scenario: (settleMs) => ({ outcome: 'PROCESSING', settleAfterMs: settleMs }),
    expect: 'REFUNDED',
    passes: ['refund recorded', 'refund request', 'refund accepted'],
  },
  // The merchant's available balance is short: refused for good, nothing refunded.
  notEnough: { scenario: () => ({ outcome: 'NOTENOUGH' }), expect: 'FAILED NOTENOUGH', passes: ['refund recorded', 'refund request'] },
  // Refused FREQUENCY_LIMITED once: the register hears REFUND_PENDING, the retry (a minute later, or at the next start) goes through.
  frequencyLimited: {
    scenario: () => ({ outcome: 'SUCCESS', refuseFirst: { code: 'FREQUENCY_LIMITED', times: 1 } }),
    expect: 'FAILED REFUND_PENDING',
    passes: ['refund recorded', 'refund request'],
  },
};
const REFUND_KIND_NAMES = Object.keys(REFUND_KINDS) as RefundKind[];
/** A refund not killed: mostly plainly accepted. */
const REFUND_KIND_MIX: readonly RefundKind[] = ['accepted', 'accepted', 'accepted', 'systemError', 'lostAnswer', 'processing', 'notEnough', 'frequencyLimited'];

/**
 * What the register refunds of a PAID sale: part of it; all of it; the same REFUND twice (same RID); part
 * and then the rest under a second RID; part and then more than is left; more than the sale at once.
 */
type RefundShape = 'partial' | 'full' | 'twice' | 'rest' | 'over' | 'overSale';
const REFUND_SHAPES: readonly RefundShape[] = ['partial', 'full', 'twice', 'twice', 'rest', 'rest', 'over', 'overSale'];

/** The amount of a REFUND line, from the sale's amount A: a share of it, all, the rest after step 0, A - step 0 + extra, A + extra, or step `of` again. */
type RefundMode = 'share' | 'all' | 'rest' | 'over' | 'overSale' | 'again';

interface RefundStepPlan {
  mode: RefundMode;
  /** A new RID's number within the sale (`${ref}R${n}`); 'again' reuses the RID of step 0. */
  ridNo: number;
  /** [0, 1): which kind (among those passing the kill point, when this step takes the kill). */
  kindDraw: number;
  settleMs: number;
}

interface RefundPlan {
  shape: RefundShape;
  steps: RefundStepPlan[];
  /** Permille of the sale for 'share' (at least 1 fen, less than the sale when it is more than 1 fen). */
  share: number;
  /** Fen over what is left, for 'over' and 'overSale'. */
  extra: number;
  /** The session takes a kill (at the lane's next refund point) on one step that records a refund. */
  killed: boolean;
  /** [0, 1): which of those steps. */
  killStepDraw: number;
  killDelayMs: number;
  /** Kills while the restarted daemon recovers the refund, one per restart while it is requested or submitted. */
  recoveryKills: { pick: number; delayMs: number }[];
}

/** The journal row's line for the register (contract §3), written out here apart from the box's own. */
function refundLineOf(refund: Refund): string {
  if (refund.state === 'accepted' || refund.state === 'succeeded' || refund.state === 'closed' || refund.state === 'change') {
    return `REFUNDED ${refund.rid} ${refund.ref} ${refund.amountFen} ${refund.outRefundNo}`;
  }
  if (refund.state === 'failed' || refund.finalCode !== null) return `FAILED ${refund.rid} ${refund.finalCode ?? 'FAILED'} `;
  return `PENDING ${refund.rid}`;
}

const refundHolds = (refund: Refund): boolean => refund.state !== 'failed' && refund.state !== 'closed';
const unfinishedRefund = (refund: Refund): boolean => refund.state === 'requested' || refund.state === 'submitted';
const killLabel = (spec: KillSpec): string => `${spec.at}${spec.delayMs ? `+${spec.delayMs}ms` : ''}`;

interface SalePlan {
  ref: string;
  /** The REF was tried before and its last attempt FAILED. */
  again: boolean;
  amount: number;
  kind: Kind;
  scenario: Scenario;
  code: string;
  kill: KillSpec | null;
  /** Kills while the restarted daemon recovers the sale, one per restart, while the sale is unfinished. */
  recoveryKills: KillSpec[];
  cancelDelayMs: number;
  /** After the sale: PAY the same REF again (a register that lost the answer, or a customer paying again). */
  repay: boolean;
  idleKill: KillSpec | null;
  /** After the sale, if it ended PAID: the refunds the register asks for. */
  refund: RefundPlan | null;
}

const EMPTY_COUNTS: LaneCounts = Object.freeze({
  sales: 0,
  paid: 0,
  reversed: 0,
  failed: 0,
  chargedAndReported: 0,
  refunded: 0,
  refunds: 0,
  refundsAccepted: 0,
  refundsFailed: 0,
});

class Killed extends Error {
  constructor(readonly at: string) {
    super(`daemon killed at ${at}`);
  }
}

class LaneFailure extends Error {}

interface Armed {
  readonly matched: boolean;
  /** Waits `graceMs` for the point if it was not reached; then true if the daemon was killed, false if disarmed. */
  settle(graceMs: number): Promise<boolean>;
}

interface Waiter {
  test: (line: string) => boolean;
  resolve: (line: string) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function parseLog(line: string): LogLine {
  const text = line.replace(/^<\d>/, '');
  const fieldsAt = text.search(/ [a-z_]+=/);
  const message = fieldsAt < 0 ? text : text.slice(0, fieldsAt);
  const ref = / ref=([A-Za-z0-9_-]+)(?: |$)/.exec(text)?.[1] ?? null;
  const rid = / rid=([A-Za-z0-9_-]+)(?: |$)/.exec(text)?.[1] ?? null;
  return { message, ref, rid };
}

/** Lines in the daemon's log that only a bug prints. */
const BUG_LINES =
  /box fault|sale stopped by a journal error|reversal queue failed|refund queue failed|refund stopped by an error|answered a refund with another number|Unhandled|TypeError|ReferenceError|RangeError|SyntaxError|BAD_TRANSITION|cannot go from/;

class Lane {
  readonly rng: Rng;
  /** Refund plans come from a stream of their own, one draw set per sale, so the sales' draws are the same as without refunds. */
  readonly refundRng: Rng;
  readonly violations: string[] = [];
  readonly killsAt: Record<string, number> = {};
  readonly logs: string[] = [];
  readonly refs = new Set<string>();
  /** Every RID the register sent a REFUND for. */
  readonly rids = new Set<string>();
  kills = 0;
  salesDriven = 0;
  private rig!: Rig;
  private hasRig = false;
  private life = new AbortController();
  private readonly logListeners = new Set<(line: LogLine) => void>();
  private readonly markListeners = new Set<(mark: 'pay' | 'scan' | 'start' | 'idle') => void>();
  private readonly waiters = new Set<Waiter>();
  private readonly expectedExits = new WeakSet<object>();
  private saleNo = 0;
  private codeNo = 0;
  private pendingRef: string | null = null;
  private refundPointIndex = 0;

  constructor(
    readonly index: number,
    seed: number,
    private readonly quota: number,
    private readonly points: readonly SalePoint[],
    private readonly refundPoints: readonly RefundPoint[],
    private readonly say: (line: string) => void,
    private readonly onKill: () => void,
  ) {
    this.rng = new Rng(mix(seed, index));
    this.refundRng = new Rng(mix(seed, 500 + index));
  }

  private violation(text: string): void {
    const line = `lane ${this.index}: ${text}`;
    this.violations.push(line);
    this.say(`VIOLATION ${line}`);
  }

  async run(): Promise<void> {
    try {
      this.rig = await Rig.start({ env: ENV });
      this.hasRig = true;
      this.rig.register.onLine = () => this.onRegisterLine();
      await this.start();
      let pointIndex = 0;
      while (this.kills < this.quota) {
        const plan = this.draw(pointIndex);
        if (plan.kill) pointIndex++;
        await this.sale(plan);
      }
      await this.drain();
    } catch (error) {
      this.violation(`lane stopped: ${(error as Error).message}`);
    }
  }

  /** The checks, on the stopped lane; then the rig goes. */
  async finish(keepDir: string | undefined): Promise<LaneCounts> {
    if (!this.hasRig) return EMPTY_COUNTS;
    const counts = this.check();
    if (this.violations.length > 0 && keepDir) this.keep(keepDir);
    await this.rig.close();
    return counts;
  }

  // ---- plans ----

  private draw(pointIndex: number): SalePlan {
    const r = this.rng;
    const killed = r.chance(0.45);
    const point = this.points[pointIndex % this.points.length]!;
    let kind: Kind;
    if (killed) {
      kind = r.pick(KIND_NAMES.filter((k) => KINDS[k].passes.includes(point)));
    } else {
      kind = r.chance(0.92) ? r.pick(CHEAP_KINDS) : r.pick(COSTLY_KINDS);
    }
    const spec = KINDS[kind];
    const scenario = spec.scenario(r);
    const delay = (() => {
      if (point === 'after PAY') return r.int(0, 300);
      if (point === 'after scan') return r.int(0, 3000);
      return r.chance(0.3) ? r.int(1, 200) : 0;
    })();
    // A sale that reached WeChat Pay keeps the restarted daemon in recovery until 15 s after its order:
    // kill it again in there (early points first; a point after the reverse last, it ends the wait).
    const chain = r.pick([0, 1, 2, 2, 3, 3, 4]);
    const recoveryKills: KillSpec[] = [];
    for (let i = 0; i < 4; i++) {
      const early = r.pick(EARLY_RECOVERY_POINTS);
      const late = r.pick(LATE_RECOVERY_POINTS);
      const at = i === chain - 1 && r.chance(0.5) ? late : early;
      const delayMs = at === 'after start' ? r.int(0, 400) : at === 'recovering' ? r.int(0, 6000) : r.chance(0.3) ? r.int(1, 100) : 0;
      if (i < chain) recoveryKills.push({ at, delayMs });
    }
    const cancelDelayMs = r.int(0, 1500);
    const repay = r.chance(0.25);
    const idle = r.chance(0.1);
    const idleDelay = r.int(0, 3500);
    const amount = r.int(1, 99_999);
    const again = this.pendingRef !== null;
    const ref = this.pendingRef ?? `L${this.index}S${++this.saleNo}`;
    this.pendingRef = null;
    this.codeNo++;
    return {
      ref,
      again,
      amount,
      kind,
      scenario,
      code: paymentCode(this.index * 10_000_000 + this.codeNo, '13'),
      kill: killed ? { at: point, delayMs: delay } : null,
      recoveryKills,
      cancelDelayMs,
      repay,
      idleKill: idle ? { at: 'idle', delayMs: idleDelay } : null,
      refund: this.drawRefund(),
    };
  }

  /** The same number of draws for every sale, whether it is refunded or not (and whether it ends PAID or not). */
  private drawRefund(): RefundPlan | null {
    const r = this.refundRng;
    const wanted = r.chance(0.5);
    const shape = r.pick(REFUND_SHAPES);
    const share = r.int(50, 950);
    const extra = r.int(1, 500);
    const kindDraws = [r.next(), r.next()];
    const settleMs = [r.int(1000, 15000), r.int(1000, 15000)];
    const killed = r.chance(0.6);
    const killStepDraw = r.next();
    const killDelayMs = r.chance(0.3) ? r.int(1, 150) : 0;
    const recoveryCount = r.pick([0, 0, 1, 1, 2]);
    const recoveryKills = [0, 1].map(() => ({ pick: r.int(0, 5), delayMs: r.chance(0.3) ? r.int(1, 60) : 0 }));
    if (!wanted) return null;
    const step = (mode: RefundMode, i: number, ridNo: number): RefundStepPlan => ({ mode, ridNo, kindDraw: kindDraws[i]!, settleMs: settleMs[i]! });
    const first = step(shape === 'full' ? 'all' : shape === 'overSale' ? 'overSale' : shape === 'twice' && share > 700 ? 'all' : 'share', 0, 1);
    const steps: RefundStepPlan[] = [first];
    if (shape === 'twice') steps.push({ ...first, mode: 'again' });
    if (shape === 'rest') steps.push(step('rest', 1, 2));
    if (shape === 'over') steps.push(step('over', 1, 2));
    return { shape, steps, share, extra, killed, killStepDraw, killDelayMs, recoveryKills: recoveryKills.slice(0, recoveryCount) };
  }

  private onLog(line: string): void {
    this.logs.push(line);
    if (BUG_LINES.test(line)) this.violation(`daemon logged: ${line}`);
    if (this.logListeners.size === 0) return;
    const parsed = parseLog(line);
    for (const listener of [...this.logListeners]) listener(parsed);
  }

  // ---- one sale ----

  private async sale(plan: SalePlan): Promise<void> {
    this.salesDriven++;
    this.refs.add(plan.ref);
    const spec = KINDS[plan.kind];
    this.rig.sim.setScenario(plan.code, plan.scenario);
    let otn: string | null = null;
    const onOpened = (line: LogLine): void => {
      if (line.ref === plan.ref && line.message === 'sale opened') {
        const match = this.logs[this.logs.length - 1]?.match(/ out_trade_no=(\S+)/);
        if (match) otn = match[1]!;
      }
    };
    this.logListeners.add(onOpened);
    const armed = plan.kill ? this.arm(plan.kill, { ref: plan.ref, otn: () => otn }) : null;
    const steps: string[] = [];
    let final: string | null = null;
    let held = false;
    // A REF tried again: what its earlier attempts were before this PAY (one may still hold the money).
    const earlier = plan.again ? this.journalSales().filter((sale) => sale.ref === plan.ref) : [];
    try {
      ({ final, held } = await this.saleFlow(plan, spec));
    } catch (error) {
      if (!(error instanceof Killed)) {
        this.violation(`${plan.ref} (${plan.kind}): ${(error as Error).message}`);
        // Leave the lane in a known state: a fresh daemon (not counted as a kill).
        await this.restartUncounted();
      }
    } finally {
      this.logListeners.delete(onOpened);
    }
    let killed = false;
    if (armed) killed = await armed.settle(final ? 100 : 0);
    if (killed) {
      steps.push(`killed at ${killLabel(plan.kill!)}`);
      const recovered = await this.restart((n) => {
        const sale = this.journalSales().filter((s) => s.ref === plan.ref).pop();
        const spec = sale && !isFinal(sale.state) ? plan.recoveryKills[n] : undefined;
        return spec ? { spec, target: { ref: plan.ref, otn: () => sale!.outTradeNo } } : null;
      });
      if (recovered.length) steps.push(`recovery killed at ${recovered.join(', ')}`);
      final = await this.query(plan.ref, true);
      steps.push(`QUERY -> ${final ?? '?'}`);
    } else if (final !== null && held) {
      this.checkHeld(plan.ref, final, earlier);
      steps.push(`${final} (an earlier attempt may still hold the money: no new attempt)`);
    } else if (final !== null) {
      const want = spec.expect(plan.scenario);
      const got = final.startsWith('PAID ') ? 'PAID' : final.split(' ').slice(0, 3).join(' ').replace(` ${plan.ref}`, '');
      if (got !== want) this.violation(`${plan.ref} (${plan.kind}, not killed): expected ${want}, register got "${final}"`);
      steps.push(final);
    } else if (!this.daemonAlive()) {
      // The daemon died by itself (already reported): go on with a fresh one.
      await this.restartUncounted();
    }
    this.say(`lane ${this.index} ${plan.ref} ${plan.kind}: ${steps.join('; ')}`);

    if (plan.repay && final !== null) {
      if (final.startsWith('PAID ')) await this.repayPaid(plan, final);
      else if (final.startsWith('FAILED ')) this.pendingRef = plan.ref;
    }
    if (plan.refund && final?.startsWith('PAID ') && this.kills < this.quota) await this.refundSession(plan.ref, plan.refund);
    if (plan.idleKill) {
      const idle = this.arm(plan.idleKill, { ref: plan.ref, otn: () => null });
      this.emitMark('idle');
      if (await idle.settle(0)) {
        this.say(`lane ${this.index} killed while idle (+${plan.idleKill.delayMs}ms)`);
        await this.restart(() => null);
      }
    }
  }

  // ---- refunds of a PAID sale ----

  /** The REFUND lines of the plan, one after the other; the kill (if any) on one step that records a refund. */
  private async refundSession(ref: string, plan: RefundPlan): Promise<void> {
    const sale = this.journalSales().filter((s) => s.ref === ref && s.state === 'paid').pop();
    // The register heard PAID: the checker reports a journal that does not say so. A REF refunded before keeps its RIDs.
    if (!sale || [...this.rids].some((rid) => rid.startsWith(`${ref}R`))) return;
    const saleAmount = sale.amountFen;
    const killable = plan.steps.map((step, i) => ({ step, i })).filter(({ step }) => step.mode === 'share' || step.mode === 'all' || step.mode === 'rest');
    let killStep = -1;
    let killAt: RefundPoint | null = null;
    if (plan.killed && killable.length > 0 && this.refundPoints.length > 0) {
      killStep = killable[Math.floor(plan.killStepDraw * killable.length)]!.i;
      killAt = this.refundPoints[this.refundPointIndex++ % this.refundPoints.length]!;
    }
    const amounts: number[] = [];
    const kinds: RefundKind[] = [];
    for (const [i, step] of plan.steps.entries()) {
      const first = amounts[0] ?? 0;
      const amount = (() => {
        switch (step.mode) {
          case 'share':
            return saleAmount === 1 ? 1 : Math.min(saleAmount - 1, Math.max(1, Math.floor((saleAmount * plan.share) / 1000)));
          case 'all':
            return saleAmount;
          case 'rest':
            return saleAmount - first;
          case 'over':
            return saleAmount - first + plan.extra;
          case 'overSale':
            return saleAmount + plan.extra;
          case 'again':
            return first;
        }
      })();
      amounts.push(amount);
      // A sale of 1 fen has no rest.
      if (amount <= 0) break;
      let kind: RefundKind;
      if (step.mode === 'again') kind = kinds[0]!;
      else if (i === killStep && killAt) {
        const passing = REFUND_KIND_NAMES.filter((k) => REFUND_KINDS[k].passes.includes(killAt!));
        kind = passing[Math.floor(step.kindDraw * passing.length)]!;
      } else kind = REFUND_KIND_MIX[Math.floor(step.kindDraw * REFUND_KIND_MIX.length)]!;
      kinds.push(kind);
      // Each new RID meets its own scenario at WeChat Pay (a REFUND line sent again keeps the one it met).
      if (step.mode !== 'again') this.rig.sim.setRefundScenario(sale.outTradeNo, REFUND_KINDS[kind].scenario(step.settleMs));
      const kill = i === killStep && killAt ? { at: killAt, delayMs: plan.killDelayMs } : null;
      await this.refundStep({ ref, otn: sale.outTradeNo, saleAmount }, { rid: `${ref}R${step.ridNo}`, amount, kind, again: step.mode === 'again', kill, recoveryKills: kill ? plan.recoveryKills : [] });
    }
  }

  private journalRefunds(): Refund[] {
    if (!existsSync(this.rig.dbPath)) return [];
    const journal = Journal.open(this.rig.dbPath, { readonly: true, deviceId: DEVICE_ID, clock: systemClock });
    try {
      return journal.refunds.recent(1_000_000).reverse();
    } finally {
      journal.close();
    }
  }

  /**
   * One REFUND line. Not killed: its final line is what the plan says (the RID's line again for a RID used
   * before, OVER_AMOUNT beyond what the journal holds of the sale, else the kind's). Killed: the daemon is
   * started again (and killed again while it recovers the refund), then the register sends the same line
   * again and must hear the journal's final line for the RID at once.
   */
  private async refundStep(
    sale: { ref: string; otn: string; saleAmount: number },
    step: { rid: string; amount: number; kind: RefundKind; again: boolean; kill: KillSpec | null; recoveryKills: { pick: number; delayMs: number }[] },
  ): Promise<void> {
    const { ref, otn } = sale;
    const { rid, amount, kind } = step;
    this.rids.add(rid);
    const before = this.journalRefunds();
    const expected = ((): string => {
      const used = before.find((r) => r.rid === rid);
      if (used) return refundLineOf(used);
      const held = before.filter((r) => r.outTradeNo === otn && refundHolds(r)).reduce((sum, r) => sum + r.amountFen, 0);
      if (amount > sale.saleAmount - held) return `FAILED ${rid} OVER_AMOUNT `;
      const want = REFUND_KINDS[kind].expect;
      return want === 'REFUNDED' ? `REFUNDED ${rid} ${ref} ${amount} ` : `${want.replace('FAILED ', `FAILED ${rid} `)} `;
    })();
    const target: Target = { ref, rid, otn: () => otn };
    const armed = step.kill ? this.arm(step.kill, target) : null;
    const notes: string[] = [];
    let line: string | null = null;
    try {
      line = await this.refundFlow(ref, amount, rid);
    } catch (error) {
      if (!(error instanceof Killed)) {
        this.violation(`REFUND ${ref} ${amount} ${rid} (${kind}): ${(error as Error).message}`);
        await this.restartUncounted();
      }
    }
    const killed = armed ? await armed.settle(line !== null ? 100 : 0) : false;
    if (killed) {
      notes.push(`killed at ${killLabel(step.kill!)}`);
      const recovered = await this.restart((n) => {
        const row = this.journalRefunds().find((r) => r.rid === rid);
        const pick = step.recoveryKills[n];
        if (!row || !pick || !unfinishedRefund(row)) return null;
        const choices = REFUND_RECOVERY_CHOICES[row.state as 'requested' | 'submitted'];
        return { spec: { at: choices[pick.pick % choices.length]!, delayMs: pick.delayMs }, target };
      });
      if (recovered.length) notes.push(`recovery killed at ${recovered.join(', ')}`);
      // The register never heard the answer (or did not trust it): it sends the same REFUND line again.
      const had = this.journalRefunds().find((r) => r.rid === rid);
      line = null;
      try {
        line = await this.refundFlow(ref, amount, rid);
      } catch (error) {
        this.violation(`REFUND ${ref} ${amount} ${rid} sent again after a restart: ${(error as Error).message}`);
        if (!(error instanceof Killed)) await this.restartUncounted();
      }
      if (line !== null) {
        const now = this.journalRefunds().find((r) => r.rid === rid);
        if (had && line.startsWith('PENDING ')) {
          this.violation(`${rid}: REFUND sent again after a restart answered "${line}" (state ${had.state}): recovery did not finish it before READY`);
        } else if (had && !line.startsWith(refundLineOf(had)) && !(now && line.startsWith(refundLineOf(now)))) {
          this.violation(`${rid}: REFUND sent again after a restart answered "${line}", the journal says ${had.state} ${had.finalCode ?? ''}`);
        } else if (!had && now && !line.startsWith(refundLineOf(now))) {
          this.violation(`${rid}: REFUND after a restart (nothing recorded before the kill) answered "${line}", the journal says ${now.state} ${now.finalCode ?? ''}`);
        }
        notes.push(`sent again -> ${line}`);
      }
    } else if (line !== null) {
      if (!line.startsWith(expected)) {
        // Only the refund queue, working on another refund of the lane meanwhile, may change what is left or what WeChat Pay does.
        const after = this.journalRefunds();
        const others = (list: Refund[]): string =>
          JSON.stringify(list.filter((r) => r.rid !== rid).map((r) => [r.rid, r.state, r.attempts, r.finalCode]));
        if (others(before) === others(after)) {
          this.violation(`REFUND ${ref} ${amount} ${rid} (${kind}${step.again ? ', sent again' : ''}, not killed): expected "${expected.trimEnd()} ...", register got "${line}"`);
        } else notes.push('(the refund queue worked on another refund meanwhile)');
      }
      notes.push(line);
    }
    this.say(`lane ${this.index} REFUND ${ref} ${amount} ${rid} ${kind}${step.again ? ' (again)' : ''}: ${notes.join('; ')}`);
  }

  /** REFUND REF AMOUNT RID and its final line (a RID used before is answered at once, without an ACK). Rejects with Killed when the daemon dies. */
  private async refundFlow(ref: string, amount: number, rid: string): Promise<string> {
    const reg = this.rig.register;
    const from = reg.mark;
    reg.send(`REFUND ${ref} ${amount} ${rid}`);
    const first = await this.registerLine(
      (l) => l === `ACK ${rid}` || l === `PENDING ${rid}` || l.startsWith(`REFUNDED ${rid} `) || l.startsWith(`FAILED ${rid} `) || l.startsWith('ERR '),
      5000,
      from,
    );
    if (first.startsWith('ERR ')) throw new Error(`REFUND answered "${first}"`);
    if (first !== `ACK ${rid}`) return first;
    // Within about 10 s (contract §3): REFUND_PENDING after that.
    return this.registerLine((l) => l.startsWith(`REFUNDED ${rid} `) || l.startsWith(`FAILED ${rid} `), 20000, from);
  }

  /** QUERY REFUND RID at the end: the journal row's final line, or ERR UNKNOWN_REF for a RID refused before it was recorded. */
  private async queryRefund(rid: string): Promise<void> {
    const reg = this.rig.register;
    const from = reg.mark;
    reg.send(`QUERY REFUND ${rid}`);
    let answer: string;
    try {
      answer = await this.registerLine(
        (l) => l === `PENDING ${rid}` || l.startsWith(`REFUNDED ${rid} `) || l.startsWith(`FAILED ${rid} `) || l.startsWith('ERR '),
        5000,
        from,
      );
    } catch (error) {
      this.violation(`QUERY REFUND ${rid}: ${(error as Error).message}`);
      return;
    }
    const row = this.journalRefunds().find((r) => r.rid === rid);
    const expected = row ? refundLineOf(row) : `ERR UNKNOWN_REF ${rid}`;
    if (!answer.startsWith(expected)) this.violation(`QUERY REFUND ${rid} answered "${answer}", the journal says ${row ? `${row.state} ${row.finalCode ?? ''}` : 'nothing'}`);
  }

  private daemonAlive(): boolean {
    const daemon = this.rig.daemon;
    return daemon !== null && daemon.process.exitCode === null && daemon.process.signalCode === null;
  }

  /**
   * PAY for a REF tried again, answered FAILED at once without an ACK: the box holds the REF because an
   * earlier attempt may still hold the payer's money. That is right only if one did (its reversal pending or
   * refused for good; or done just now, by the queue, after the box answered), and nothing new was opened.
   */
  private checkHeld(ref: string, final: string, earlier: Sale[]): void {
    if (!final.startsWith(`FAILED ${ref} REVERSE_PENDING `)) {
      this.violation(`${ref}: PAY answered "${final}" without an ACK`);
      return;
    }
    const holding = earlier.filter(
      (sale) => sale.state === 'reversing' || sale.state === 'reverse_failed' || (sale.state === 'reversed' && sale.reverseAttempts > 0),
    );
    if (holding.length === 0) {
      this.violation(`${ref}: PAY refused as held ("${final}"), but no earlier attempt held money (${earlier.map((s) => s.state).join(', ')})`);
    }
    const now = this.journalSales().filter((sale) => sale.ref === ref).length;
    if (now !== earlier.length) this.violation(`${ref}: PAY refused as held, yet a new attempt was opened`);
  }

  /** PAY, scan (or not, or cancel), and the final line for the REF (`held`: answered FAILED without an ACK). Rejects with Killed when the daemon dies. */
  private async saleFlow(plan: SalePlan, spec: KindSpec): Promise<{ final: string; held: boolean }> {
    const reg = this.rig.register;
    const from = reg.mark;
    reg.send(`PAY ${plan.amount} ${plan.ref}`);
    this.emitMark('pay');
    const first = await this.registerLine(
      (l) => l === `ACK ${plan.ref}` || l.startsWith('ERR ') || l.startsWith(`PAID ${plan.ref} `) || l.startsWith(`FAILED ${plan.ref} `),
      5000,
      from,
    );
    if (first.startsWith('ERR ')) throw new Error(`PAY answered "${first}"`);
    // PAID: a paid REF answered again. FAILED without an ACK: a REF held by an earlier attempt.
    if (first.startsWith('PAID ')) return { final: first, held: false };
    if (first.startsWith('FAILED ')) return { final: first, held: true };
    if (spec.cancel === 'scan') {
      if (plan.cancelDelayMs > 0) await this.pause(Math.min(plan.cancelDelayMs, 3000));
      reg.send(`CANCEL ${plan.ref}`);
    } else if (spec.scan === 'wechat') {
      this.rig.scanner.send(plan.code);
      this.emitMark('scan');
    } else if (spec.scan === 'alipay') {
      this.rig.scanner.send(`28${String(this.codeNo).padStart(16, '0')}`);
      this.emitMark('scan');
    }
    if (spec.cancel === 'paying') {
      await this.registerLine((l) => l === `WAIT ${plan.ref} SCANNED`, 10000, from);
      reg.send(`CANCEL ${plan.ref}`);
    }
    if (spec.cancel === 'password') {
      await this.registerLine((l) => l === `WAIT ${plan.ref} PASSWORD`, 10000, from);
      if (plan.cancelDelayMs > 0) await this.pause(Math.min(plan.cancelDelayMs, 2500));
      reg.send(`CANCEL ${plan.ref}`);
    }
    const final = await this.registerLine((l) => l.startsWith(`PAID ${plan.ref} `) || l.startsWith(`FAILED ${plan.ref} `), 60000, from);
    return { final, held: false };
  }

  /** A register that PAYs a paid REF again must get the same PAID line, and nothing is charged again. */
  private async repayPaid(plan: SalePlan, paidLine: string): Promise<void> {
    const charges = this.rig.sim.ledger().filter((e) => e.attach === plan.ref).length;
    const reg = this.rig.register;
    const from = reg.mark;
    reg.send(`PAY ${plan.amount} ${plan.ref}`);
    try {
      const again = await this.registerLine((l) => l.includes(` ${plan.ref}`) || l.startsWith('ERR '), 5000, from);
      if (again !== paidLine) this.violation(`${plan.ref}: PAY repeated for a paid REF answered "${again}", first answer was "${paidLine}"`);
      const after = this.rig.sim.ledger().filter((e) => e.attach === plan.ref).length;
      if (after !== charges) this.violation(`${plan.ref}: PAY repeated for a paid REF sent a new order to WeChat Pay`);
    } catch (error) {
      if (!(error instanceof Killed)) this.violation(`${plan.ref}: PAY repeated for a paid REF: ${(error as Error).message}`);
    }
  }

  /** QUERY REF on a freshly restarted daemon: recovery ran before READY, so the answer is final. */
  private async query(ref: string, afterRestart: boolean): Promise<string | null> {
    const reg = this.rig.register;
    const from = reg.mark;
    reg.send(`QUERY ${ref}`);
    let answer: string;
    try {
      answer = await this.registerLine(
        (l) => l.startsWith(`PAID ${ref} `) || l.startsWith(`FAILED ${ref} `) || l.startsWith(`PENDING ${ref}`) || l.startsWith('ERR '),
        5000,
        from,
      );
    } catch (error) {
      this.violation(`QUERY ${ref}: ${(error as Error).message}`);
      return null;
    }
    const sale = this.journalSales().filter((s) => s.ref === ref).pop();
    if (!sale) {
      if (answer !== `ERR UNKNOWN_REF ${ref}`) this.violation(`QUERY ${ref}: no sale in the journal but the register got "${answer}"`);
      return null;
    }
    if (answer.startsWith('PENDING ') && afterRestart) {
      this.violation(`QUERY ${ref} after a restart answered PENDING (state ${sale.state}): recovery did not finish it before READY`);
    }
    const expected = sale.state === 'paid' ? `PAID ${ref} ${sale.outTradeNo} ${sale.transactionId}` : `FAILED ${ref} ${sale.finalCode} `;
    if (!answer.startsWith(expected)) this.violation(`QUERY ${ref} answered "${answer}", the journal says ${sale.state} ${sale.finalCode ?? ''}`);
    return answer.startsWith('ERR ') ? null : answer;
  }

  // ---- the daemon ----

  private async start(): Promise<void> {
    this.life = new AbortController();
    const { daemon, ready: starting } = this.rig.spawnDaemon({ onLog: (line) => this.onLog(line), timeoutMs: 60_000 });
    this.emitMark('start');
    void daemon.exited.then((code) => {
      if (!this.expectedExits.has(daemon)) {
        this.violation(`the daemon exited by itself with code ${code}: ${daemon.lines.slice(-5).join(' | ')}`);
        this.life.abort(new Killed('own exit'));
      }
    });
    await starting;
  }

  /**
   * Starts the daemon again; as long as `nextKill(n)` names one (the sale or refund still unfinished in the
   * journal, and a recovery kill left in the plan), kills it at that point before READY and starts it again.
   * Returns the recovery points hit.
   */
  private async restart(nextKill: (n: number) => { spec: KillSpec; target: Target } | null): Promise<string[]> {
    const hit: string[] = [];
    let next = 0;
    for (;;) {
      const kill = nextKill(next);
      const armed = kill ? this.arm(kill.spec, kill.target) : null;
      try {
        await this.start();
      } catch (error) {
        if (!armed?.matched) throw new LaneFailure(`the daemon did not start again: ${(error as Error).message}`);
      }
      if (!armed || !(await armed.settle(0))) return hit;
      hit.push(killLabel(kill!.spec));
      next++;
    }
  }

  private async restartUncounted(): Promise<void> {
    const daemon = this.rig.daemon;
    if (daemon && daemon.process.exitCode === null && daemon.process.signalCode === null) {
      this.expectedExits.add(daemon);
      daemon.process.kill('SIGKILL');
      await daemon.exited;
    }
    this.life.abort(new Killed('reset'));
    await this.start();
  }

  private async killNow(at: KillPoint): Promise<boolean> {
    const daemon = this.rig.daemon;
    if (!daemon || daemon.process.exitCode !== null || daemon.process.signalCode !== null) return false;
    this.expectedExits.add(daemon);
    daemon.process.kill('SIGKILL');
    this.kills++;
    this.killsAt[at] = (this.killsAt[at] ?? 0) + 1;
    this.onKill();
    this.life.abort(new Killed(at));
    await daemon.exited;
    return true;
  }

  /** Kills the daemon when the sale (ref, out_trade_no) or its refund (rid) reaches the point, after its delay. */
  private arm(spec: KillSpec, target: Target): Armed {
    const { ref, rid, otn } = target;
    let matched = false;
    let closed = false;
    let settleKilled!: (killed: boolean) => void;
    const killed = new Promise<boolean>((r) => (settleKilled = r));
    const cleanups: (() => void)[] = [];
    const cleanup = (): void => {
      for (const c of cleanups.splice(0)) c();
    };
    const fire = (): void => {
      if (matched || closed) return;
      matched = true;
      cleanup();
      const go = (): void => void this.killNow(spec.at).then(settleKilled);
      if (spec.delayMs > 0) setTimeout(go, spec.delayMs);
      else go();
    };
    const logTest = LOG_POINTS[spec.at];
    const call = REQUEST_POINTS[spec.at];
    const mark = TIME_POINTS[spec.at];
    const ofRefund = rid !== undefined && ALL_REFUND_POINTS.includes(spec.at);
    if (logTest) {
      const listener = (line: LogLine): void => {
        if ((ofRefund ? line.rid === rid : line.ref === ref) && logTest(line.message)) fire();
      };
      this.logListeners.add(listener);
      cleanups.push(() => this.logListeners.delete(listener));
    } else if (call) {
      cleanups.push(
        this.rig.sim.onRequest((seen, no) => {
          if (seen === call && (call === 'refundquery' || (no !== null && no === otn()))) fire();
        }),
      );
    } else if (mark) {
      const listener = (seen: string): void => {
        if (seen === mark) fire();
      };
      this.markListeners.add(listener);
      cleanups.push(() => this.markListeners.delete(listener));
    }
    return {
      get matched() {
        return matched;
      },
      settle: async (graceMs: number) => {
        if (!matched && graceMs > 0) await sleep(graceMs);
        if (!matched) {
          closed = true;
          cleanup();
          settleKilled(false);
        }
        return killed;
      },
    };
  }

  private emitMark(mark: 'pay' | 'scan' | 'start' | 'idle'): void {
    for (const listener of [...this.markListeners]) listener(mark);
  }

  private pause(ms: number): Promise<void> {
    const signal = this.life.signal;
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason as Error);
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(signal.reason as Error);
      };
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  // ---- the register line ----

  private onRegisterLine(): void {
    const lines = this.rig.register.lines;
    const line = lines[lines.length - 1]!;
    for (const waiter of [...this.waiters]) {
      if (waiter.test(line)) {
        this.waiters.delete(waiter);
        clearTimeout(waiter.timer);
        waiter.resolve(line);
      }
    }
  }

  /** The first register line from `from` on that passes; rejects with Killed if the daemon is killed first. */
  private registerLine(test: (line: string) => boolean, timeoutMs: number, from: number): Promise<string> {
    const found = this.rig.register.lines.slice(from).find(test);
    if (found !== undefined) return Promise.resolve(found);
    const signal = this.life.signal;
    if (signal.aborted) return Promise.reject(signal.reason as Error);
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        this.waiters.delete(waiter);
        clearTimeout(waiter.timer);
        reject(signal.reason as Error);
      };
      const waiter: Waiter = {
        test,
        resolve: (line) => {
          signal.removeEventListener('abort', onAbort);
          resolve(line);
        },
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          signal.removeEventListener('abort', onAbort);
          reject(new Error(`register heard nothing matching within ${timeoutMs} ms (last: ${this.rig.register.lines.slice(-3).join(' | ')})`));
        }, timeoutMs),
      };
      this.waiters.add(waiter);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  // ---- the end ----

  private journalSales(): Sale[] {
    if (!existsSync(this.rig.dbPath)) return [];
    const journal = Journal.open(this.rig.dbPath, { readonly: true, deviceId: DEVICE_ID, clock: systemClock });
    try {
      return journal.recent(1_000_000).reverse();
    } finally {
      journal.close();
    }
  }

  /**
   * Waits until the reversal queue has finished every sale; starts the daemon again (SIGTERM, not counted)
   * while a refund is still requested or submitted, since recovery works on every unfinished refund at once
   * and the queue's next attempt may be a minute or more away (WeChat Pay is reachable all along, so each
   * start settles what it can); then asks the register's QUERY for every REF and QUERY REFUND for every RID.
   */
  private async drain(): Promise<void> {
    const deadline = Date.now() + 180_000;
    let unfinished: Sale[] = [];
    for (;;) {
      unfinished = this.journalSales().filter((s) => !isFinal(s.state));
      if (unfinished.length === 0 || Date.now() > deadline) break;
      await sleep(500);
    }
    if (unfinished.length > 0) {
      this.violation(`still unfinished 180 s after the last sale: ${unfinished.map((s) => `${s.ref} ${s.outTradeNo} ${s.state}`).join(', ')}`);
    }
    for (let round = 0; round < 4; round++) {
      const open = this.journalRefunds().filter(unfinishedRefund);
      if (open.length === 0) break;
      this.say(`lane ${this.index}: restarting so that recovery finishes ${open.map((r) => `${r.rid} (${r.state} ${r.finalCode ?? ''})`).join(', ')}`);
      await this.stop();
      await this.start();
    }
    for (const ref of this.refs) await this.query(ref, false);
    for (const rid of this.rids) await this.queryRefund(rid);
    await this.stop();
  }

  private async stop(): Promise<void> {
    if (this.rig.daemon) this.expectedExits.add(this.rig.daemon);
    const code = await this.rig.stopDaemon();
    if (code !== 0) this.violation(`SIGTERM: the daemon exited with code ${code}`);
  }

  private check(): LaneCounts {
    let journal: Journal;
    try {
      journal = Journal.open(this.rig.dbPath, { readonly: true, deviceId: DEVICE_ID, clock: systemClock });
    } catch (error) {
      this.violation(`the journal cannot be opened: ${(error as Error).message}`);
      return EMPTY_COUNTS;
    }
    try {
      const { violations, counts } = checkMoneyRules({
        quickCheck: journal.quickCheck(),
        unfinished: journal.unfinished(),
        sales: journal.recent(1_000_000).reverse(),
        ledger: this.rig.sim.ledger(),
        registerLines: this.rig.register.lines,
        refunds: journal.refunds.recent(1_000_000).reverse(),
        refundLedger: this.rig.sim.refunds(),
        rids: [...this.rids],
      });
      for (const text of violations) this.violation(text);
      return counts;
    } finally {
      journal.close();
    }
  }

  private keep(dir: string): void {
    const target = join(dir, `lane-${this.index}`);
    mkdirSync(target, { recursive: true });
    for (const suffix of ['', '-wal', '-shm']) {
      if (existsSync(this.rig.dbPath + suffix)) copyFileSync(this.rig.dbPath + suffix, join(target, 'scanbox.db' + suffix));
    }
    writeFileSync(join(target, 'daemon.log'), this.logs.join('\n') + '\n');
    writeFileSync(join(target, 'register.txt'), this.rig.register.lines.join('\n') + '\n');
    writeFileSync(join(target, 'ledger.json'), JSON.stringify(this.rig.sim.ledger(), null, 1));
    writeFileSync(join(target, 'refund-ledger.json'), JSON.stringify(this.rig.sim.refunds(), null, 1));
    writeFileSync(join(target, 'violations.txt'), this.violations.join('\n') + '\n');
  }
}

export async function runCrashMatrix(options: CrashMatrixOptions = {}): Promise<CrashMatrixResult> {
  const started = Date.now();
  const kills = options.kills ?? 300;
  const seed = options.seed ?? 1;
  const say = options.log ?? (() => undefined);
  const laneCount = options.lanes ?? Math.min(8, Math.max(2, Math.ceil(kills / 8)));
  // Every sale point once before any twice: the lanes take turns in one seeded sequence of shuffles.
  const order = new Rng(mix(seed, 1000));
  const sequence: SalePoint[] = [];
  while (sequence.length < kills * 2 + laneCount) sequence.push(...order.shuffle(SALE_POINTS));
  // The same for the refund points, from a stream of their own.
  const refundOrder = new Rng(mix(seed, 1001));
  const refundSequence: RefundPoint[] = [];
  while (refundSequence.length < kills + laneCount * REFUND_POINTS.length) refundSequence.push(...refundOrder.shuffle(REFUND_POINTS));
  let total = 0;
  const lanes = Array.from({ length: laneCount }, (_, i) => {
    const quota = Math.floor(kills / laneCount) + (i < kills % laneCount ? 1 : 0);
    const points = sequence.filter((_, k) => k % laneCount === i);
    const refundPoints = refundSequence.filter((_, k) => k % laneCount === i);
    return new Lane(i, seed, quota, points, refundPoints, say, () => {
      total++;
      if (total % 10 === 0) say(`progress: ${total}/${kills} kills, ${Math.round((Date.now() - started) / 1000)} s`);
    });
  });
  // Lanes start a little apart, so their simulators' key generation and daemons' start-ups do not collide.
  await Promise.all(lanes.map(async (lane, i) => {
    await sleep(i * 300);
    await lane.run();
  }));
  const result: CrashMatrixResult = {
    sales: 0,
    kills: 0,
    paid: 0,
    reversed: 0,
    failed: 0,
    chargedAndReported: 0,
    violations: [],
    killsAt: {},
    refunded: 0,
    refunds: 0,
    refundsAccepted: 0,
    refundsFailed: 0,
    lanes: laneCount,
    seconds: 0,
  };
  for (const lane of lanes) {
    const counts = await lane.finish(options.keepDir);
    result.sales += counts.sales;
    result.paid += counts.paid;
    result.reversed += counts.reversed;
    result.failed += counts.failed;
    result.chargedAndReported += counts.chargedAndReported;
    result.refunded += counts.refunded;
    result.refunds += counts.refunds;
    result.refundsAccepted += counts.refundsAccepted;
    result.refundsFailed += counts.refundsFailed;
    result.kills += lane.kills;
    result.violations.push(...lane.violations);
    for (const [at, n] of Object.entries(lane.killsAt)) result.killsAt[at] = (result.killsAt[at] ?? 0) + n;
  }
  result.seconds = Math.round((Date.now() - started) / 100) / 10;
  return result;
}

// ---- npm run soak ----

function argValue(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i >= 0) return args[i + 1];
  const eq = args.find((a) => a.startsWith(`${name}=`));
  return eq?.slice(name.length + 1);
}

async function main(args: string[]): Promise<number> {
  const number = (name: string, fallback: number): number => {
    const text = argValue(args, name);
    if (text === undefined) return fallback;
    const value = Number(text);
    if (!Number.isSafeInteger(value) || value < 0) throw new Error(`${name} needs a whole number, got ${text}`);
    return value;
  };
  let kills: number;
  let seed: number;
  let lanes: number | undefined;
  try {
    kills = number('--kills', 300);
    seed = number('--seed', 1);
    const l = argValue(args, '--lanes');
    lanes = l === undefined ? undefined : number('--lanes', 4);
  } catch (error) {
    process.stderr.write(`soak: ${(error as Error).message}\nusage: npm run soak -- [--kills N] [--seed S] [--lanes L] [--keep DIR]\n`);
    return 2;
  }
  const keepDir = resolve(argValue(args, '--keep') ?? join(process.cwd(), `soak-${seed}`));
  const t0 = Date.now();
  const stamp = (): string => `${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s`;
  process.stdout.write(`soak: ${kills} kills, seed ${seed}${lanes ? `, ${lanes} lanes` : ''}; on a violation the evidence goes to ${keepDir}\n`);
  const result = await runCrashMatrix({ kills, seed, lanes, keepDir, log: (line) => process.stdout.write(`${stamp()} ${line}\n`) });
  const rows: [string, string][] = [
    ['lanes (counters at once)', String(result.lanes)],
    ['kills (SIGKILL)', String(result.kills)],
    ['sales (journal rows)', String(result.sales)],
    ['  paid', String(result.paid)],
    ['  reversed', String(result.reversed)],
    ['  failed (nothing charged)', String(result.failed)],
    ['charged and reported PAID', String(result.chargedAndReported)],
    ['charged, then given back', String(result.refunded)],
    ['refunds (journal rows)', String(result.refunds)],
    ['  accepted by WeChat Pay', String(result.refundsAccepted)],
    ['  refused by WeChat Pay', String(result.refundsFailed)],
    ['violations', String(result.violations.length)],
    ['seconds', String(result.seconds)],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  process.stdout.write('\ncounts\n');
  for (const [k, v] of rows) process.stdout.write(`  ${k.padEnd(width)}  ${v}\n`);
  process.stdout.write('\nkills by point\n');
  const points = [...SALE_POINTS, ...RECOVERY_POINTS, 'idle', ...ALL_REFUND_POINTS];
  for (const point of points) process.stdout.write(`  ${point.padEnd(24)}  ${result.killsAt[point] ?? 0}\n`);
  if (result.violations.length > 0) {
    process.stdout.write('\nviolations\n');
    for (const v of result.violations) process.stdout.write(`  ${v}\n`);
    process.stdout.write(`soak: FAILED with ${result.violations.length} violation(s) (seed ${seed}); evidence in ${keepDir}\n`);
    return 1;
  }
  process.stdout.write(`soak: ok, no violation in ${result.kills} kills (seed ${seed})\n`);
  return 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`soak: ${(error as Error).stack ?? String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
