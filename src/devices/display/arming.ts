import { formatYuan } from '../../money.js';
import type { Burst } from './bursts.js';
import type { Reading } from './reading.js';

/**
 * idle -> armed(amount) -> paying -> idle: display.md's rules for a box that charges from a line never meant
 * for payments.
 * - Only a total arms (rule 1), once the line has been quiet for the settle time (rule 2: the caller ends a
 *   burst only then), with no undecodable byte in the burst (rule 8), under the box's maximum (rule 5).
 * - The scan must come after arming with no display byte since (rule 2): while a burst is under way nothing
 *   can be taken; it is decided again at its end.
 * - The same total again changes nothing; another total replaces the armed one; anything else (price, change,
 *   a cleared display, garbage) disarms (rules 3, 6).
 * - A display change while a payment is in flight starts nothing and is said loudly (rule 3); the payment goes
 *   on (rule 6: a clear never touches a payment already sent).
 * - After a payment: idle. Only a sale that ended with nothing taken (failed, the display unchanged since) leaves
 *   the same total armed, so the customer may scan another code for the amount still on the display.
 */

export type ArmingState =
  | { kind: 'idle' }
  | { kind: 'armed'; amountFen: number; burst: Burst; reading: Reading }
  | { kind: 'paying'; amountFen: number; burst: Burst; reading: Reading; changed: boolean };

export type DecisionKind = 'armed' | 'still_armed' | 'replaced' | 'disarmed' | 'not_armed' | 'unchanged' | 'during_payment';

export interface Decision {
  kind: DecisionKind;
  /** What the box did, in words, for the log and `scanbox display`. */
  text: string;
  /** The amount armed after the decision, if any. */
  armedFen: number | null;
}

export type Take =
  | { ok: true; amountFen: number; burst: Burst; reading: Reading }
  | { ok: false; why: 'nothing_armed' | 'line_busy' | 'paying'; text: string };

export class Arming {
  private current: ArmingState = { kind: 'idle' };
  private lineBusy = false;

  constructor(private readonly maxFen: number) {
    if (!Number.isSafeInteger(maxFen) || maxFen <= 0) throw new TypeError(`maximum must be a positive whole number of fen: ${maxFen}`);
  }

  get state(): ArmingState {
    return this.current;
  }

  /** The amount a scan would take now, or null. */
  get armedFen(): number | null {
    return this.current.kind === 'armed' && !this.lineBusy ? this.current.amountFen : null;
  }

  /** The first byte of a burst. True when a payment is in flight: the caller warns the cashier at once. */
  burstStarted(): boolean {
    this.lineBusy = true;
    if (this.current.kind === 'paying') {
      this.current.changed = true;
      return true;
    }
    return false;
  }

  burstEnded(burst: Burst, reading: Reading): Decision {
    this.lineBusy = false;
    const before = this.current;
    if (before.kind === 'paying') {
      return { kind: 'during_payment', text: 'display changed while a payment is in flight: nothing started, the payment goes on', armedFen: null };
    }
    const armed = before.kind === 'armed' ? before : null;
    if (!reading.touched) {
      return { kind: 'unchanged', text: armed ? `no byte for the display: still armed ${formatYuan(armed.amountFen)}` : 'no byte for the display', armedFen: armed?.amountFen ?? null };
    }
    let why = reading.why;
    if (reading.totalFen !== null && reading.undecodable === 0) {
      const fen = reading.totalFen;
      if (fen > this.maxFen) why = `total ${formatYuan(fen)} over the box's maximum ${formatYuan(this.maxFen)}`;
      else if (armed && armed.amountFen === fen) {
        return { kind: 'still_armed', text: `same total again: still armed ${formatYuan(fen)}`, armedFen: fen };
      } else {
        this.current = { kind: 'armed', amountFen: fen, burst, reading };
        return armed
          ? { kind: 'replaced', text: `new total ${formatYuan(fen)} replaces ${formatYuan(armed.amountFen)}: armed ${formatYuan(fen)}`, armedFen: fen }
          : { kind: 'armed', text: `armed ${formatYuan(fen)}`, armedFen: fen };
      }
    }
    this.current = { kind: 'idle' };
    return armed
      ? { kind: 'disarmed', text: `disarmed ${formatYuan(armed.amountFen)}: ${why}`, armedFen: null }
      : { kind: 'not_armed', text: `not armed: ${why}`, armedFen: null };
  }

  /** The scan: the armed total, once, if the line has been quiet since it was armed (rule 2). */
  take(): Take {
    if (this.current.kind === 'paying') return { ok: false, why: 'paying', text: 'a payment is in flight' };
    if (this.current.kind !== 'armed') return { ok: false, why: 'nothing_armed', text: 'no total armed' };
    if (this.lineBusy) return { ok: false, why: 'line_busy', text: 'the display is changing: wait for the total' };
    const { amountFen, burst, reading } = this.current;
    this.current = { kind: 'paying', amountFen, burst, reading, changed: false };
    return { ok: true, amountFen, burst, reading };
  }

  /** The payment is over. `nothingTaken`: it failed and no money is held (not reversed, not pending). */
  settled(nothingTaken: boolean): ArmingState {
    const paying = this.current;
    if (paying.kind !== 'paying') return paying;
    this.current =
      nothingTaken && !paying.changed && !this.lineBusy
        ? { kind: 'armed', amountFen: paying.amountFen, burst: paying.burst, reading: paying.reading }
        : { kind: 'idle' };
    return this.current;
  }
}
