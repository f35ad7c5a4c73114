/**
 * The customer light and buzzer (contract §5): one pattern per state, played on whatever pins are wired.
 *
 * Without GPIO (every dev machine, CI, `scanbox demo`) the indicator plays nothing but still logs each pattern
 * change at debug as `light green=... red=... buzzer=... state=...`: the demo shows the customer light by
 * reading those lines.
 */
import { systemClock, type Clock } from '../clock.js';
import type { Logger } from '../log.js';
import type { GpioBackend, OutputPin } from './gpio.js';

export type LightState = 'ready' | 'waiting_scan' | 'paying' | 'paid' | 'refunded' | 'failed' | 'offline';

export const LIGHT_STATES: readonly LightState[] = ['ready', 'waiting_scan', 'paying', 'paid', 'refunded', 'failed', 'offline'];

export interface IndicatorOptions {
  /** BCM pin numbers; null = not wired. */
  pins: { green: number | null; red: number | null; buzzer: number | null };
  /** null or not `available`: nothing is driven, patterns are only logged. */
  backend: GpioBackend | null;
  log: Logger;
  clock?: Clock;
}

type Output = 'green' | 'red' | 'buzzer';
const OUTPUTS: readonly Output[] = ['green', 'red', 'buzzer'];

type Levels = Record<Output, boolean>;
interface Step {
  levels: Levels;
  ms: number;
}
interface Pattern {
  steps: Step[];
  /** A looping pattern plays until the next `show`; a transient one plays once, then the steady state returns. */
  loop: boolean;
  /** What the log says each output does. */
  words: Record<Output, string>;
}

/** A short beep: long enough to hear over a shop, short enough not to annoy the queue. */
export const BEEP_MS = 120;
/** How long paid and failed stay on before the light goes back to ready (or offline). */
export const RESULT_MS = 3000;
export const FLASH_MS = 300;

const lit = (green: boolean, red: boolean, buzzer = false): Levels => ({ green, red, buzzer });

function beeps(count: number, total: number, light: (buzzer: boolean) => Levels): Step[] {
  const steps: Step[] = [];
  for (let i = 0; i < count; i++) {
    steps.push({ levels: light(true), ms: BEEP_MS });
    const last = i === count - 1;
    steps.push({ levels: light(false), ms: last ? total - (2 * count - 1) * BEEP_MS : BEEP_MS });
  }
  return steps;
}

/**
 * The steady patterns start dark, so that the end of a 3 s paid or failed light is visible even when the next
 * pattern's first lit step would use the same LED.
 */
const PATTERNS: Record<LightState, Pattern> = {
  ready: {
    steps: [
      { levels: lit(false, false), ms: 1900 },
      { levels: lit(true, false), ms: 100 },
    ],
    loop: true,
    words: { green: 'heartbeat', red: 'off', buzzer: '-' },
  },
  waiting_scan: {
    steps: [
      { levels: lit(true, false), ms: 500 },
      { levels: lit(false, false), ms: 500 },
    ],
    loop: true,
    words: { green: 'blink', red: 'off', buzzer: '-' },
  },
  paying: {
    steps: [
      { levels: lit(true, false), ms: 150 },
      { levels: lit(false, true), ms: 150 },
    ],
    loop: true,
    words: { green: 'fast-blink', red: 'fast-blink', buzzer: '-' },
  },
  paid: {
    steps: beeps(1, RESULT_MS, (buzzer) => lit(true, false, buzzer)),
    loop: false,
    words: { green: 'on', red: 'off', buzzer: 'beep1' },
  },
  // A refund WeChat Pay accepted: green for 1 s with two short beeps, then two blinks, so nobody at the counter
  // takes it for a payment (one beep, green steady for 3 s).
  refunded: {
    steps: [
      ...beeps(2, 1000, (buzzer) => lit(true, false, buzzer)),
      { levels: lit(false, false), ms: 500 },
      { levels: lit(true, false), ms: 500 },
      { levels: lit(false, false), ms: 500 },
      { levels: lit(true, false), ms: 500 },
    ],
    loop: false,
    words: { green: 'blink', red: 'off', buzzer: 'beep2' },
  },
  failed: {
    steps: beeps(3, RESULT_MS, (buzzer) => lit(false, true, buzzer)),
    loop: false,
    words: { green: 'off', red: 'on', buzzer: 'beep3' },
  },
  offline: {
    steps: [
      { levels: lit(false, false), ms: 1000 },
      { levels: lit(false, true), ms: 1000 },
    ],
    loop: true,
    words: { green: 'off', red: 'slow-blink', buzzer: '-' },
  },
};

const FLASH: Partial<Levels> = { green: false, red: true };
const FLASH_WORDS: Record<Output, string> = { green: 'off', red: 'flash', buzzer: '-' };

const isSteady = (state: LightState): boolean => state === 'ready' || state === 'offline';

interface WiredPin {
  output: Output;
  bcm: number;
  pin: OutputPin;
  level: boolean;
  failed: boolean;
}

export class Indicator {
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly wired: WiredPin[] = [];
  private current: LightState = 'offline';
  /** Where paid and failed return to: the last ready/offline given. */
  private steady: LightState = 'offline';
  private base: Levels = lit(false, false);
  private overlay: Partial<Levels> | null = null;
  private pattern: AbortController | null = null;
  private flashing: AbortController | null = null;
  private closed = false;

  /**
   * Opens the wired pins (driven low) and starts in `offline`: until the daemon says it is ready, the box is
   * not taking sales, and the light says so. Throws a TypeError on bad pin numbers, and the backend's error
   * (for example a GpioError for EINVAL) when a pin cannot be opened, after releasing the ones already open.
   */
  constructor(options: IndicatorOptions) {
    this.log = options.log;
    this.clock = options.clock ?? systemClock;
    const seen = new Map<number, Output>();
    for (const output of OUTPUTS) {
      const bcm = options.pins[output];
      if (bcm === null) continue;
      if (!Number.isInteger(bcm) || bcm < 0) throw new TypeError(`${output} pin must be a BCM number, got ${bcm}`);
      const other = seen.get(bcm);
      if (other) throw new TypeError(`${output} and ${other} are both on BCM ${bcm}`);
      seen.set(bcm, output);
    }
    const backend = options.backend;
    if (backend?.available) {
      try {
        for (const [bcm, output] of seen) {
          this.wired.push({ output, bcm, pin: backend.open(bcm, output), level: false, failed: false });
        }
      } catch (err) {
        this.releaseAll();
        throw err;
      }
    } else if (seen.size > 0) {
      this.log.warning('light and buzzer are dark: GPIO not available', {
        reason: backend ? (backend.reason ?? 'backend not available') : 'no GPIO backend',
        green: options.pins.green,
        red: options.pins.red,
        buzzer: options.pins.buzzer,
      });
    }
    this.enter('offline');
  }

  get state(): LightState {
    return this.current;
  }

  /**
   * Switches to the state's pattern now, with one exception: ready or offline given while paid or failed is
   * still showing only sets where the light returns after its 3 s. The box reports a sale's end and its own
   * readiness back to back, and the customer must still see the result.
   */
  show(state: LightState): void {
    if (this.closed) return;
    if (!LIGHT_STATES.includes(state)) throw new TypeError(`unknown light state ${String(state)}`);
    if (isSteady(state)) {
      this.steady = state;
      if (!PATTERNS[this.current].loop) return;
      if (state === this.current) return;
    } else if (PATTERNS[state].loop && state === this.current) {
      return;
    }
    // A flash belongs to the pattern it was shown over; a new state from the box replaces both at once.
    this.flashing?.abort();
    this.flashing = null;
    this.overlay = null;
    this.enter(state);
  }

  /** A scan with no open sale: red for 300 ms over whatever is playing, which keeps its own time underneath. */
  flash(): void {
    if (this.closed) return;
    this.flashing?.abort();
    const controller = new AbortController();
    this.flashing = controller;
    this.overlay = FLASH;
    this.apply();
    this.describe(FLASH_WORDS);
    this.clock.sleep(FLASH_MS, controller.signal).then(
      () => {
        if (controller.signal.aborted) return;
        this.flashing = null;
        this.overlay = null;
        this.apply();
        this.describe(PATTERNS[this.current].words);
      },
      () => undefined,
    );
  }

  /** Stops every pattern, drives every output low and releases (unexports) the pins. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pattern?.abort();
    this.flashing?.abort();
    this.pattern = null;
    this.flashing = null;
    this.overlay = null;
    this.releaseAll();
  }

  private enter(state: LightState): void {
    this.pattern?.abort();
    this.current = state;
    const pattern = PATTERNS[state];
    this.describe(pattern.words);
    const controller = new AbortController();
    this.pattern = controller;
    void this.play(pattern, controller.signal).catch((err: unknown) => {
      if (controller.signal.aborted) return;
      this.log.error('light pattern stopped', { state, error: err instanceof Error ? err.message : String(err) });
    });
  }

  private async play(pattern: Pattern, signal: AbortSignal): Promise<void> {
    const [first] = pattern.steps;
    if (!first) return;
    // A loop that moves no wired pin (no GPIO, or only the buzzer wired) needs no timers at all.
    const moves = this.wired.some((w) => pattern.steps.some((s) => s.levels[w.output] !== first.levels[w.output]));
    if (pattern.loop && !moves) {
      this.base = first.levels;
      this.apply();
      return;
    }
    do {
      for (const step of pattern.steps) {
        this.base = step.levels;
        this.apply();
        try {
          await this.clock.sleep(step.ms, signal);
        } catch (err) {
          if (signal.aborted) return;
          throw err;
        }
        if (signal.aborted) return;
      }
    } while (pattern.loop);
    this.pattern = null;
    this.enter(this.steady);
  }

  private apply(): void {
    for (const wired of this.wired) {
      const on = this.overlay?.[wired.output] ?? this.base[wired.output];
      if (on === wired.level) continue;
      try {
        wired.pin.write(on);
        wired.level = on;
      } catch (err) {
        // A light that cannot be driven must not stop sales; say so once per pin, not once per blink.
        if (!wired.failed) {
          wired.failed = true;
          this.log.error('light pin write failed', {
            role: wired.output,
            bcm: wired.bcm,
            error: err instanceof Error ? err.message : String(err),
          });
        }
      }
    }
  }

  private describe(words: Record<Output, string>): void {
    this.log.debug('light', { green: words.green, red: words.red, buzzer: words.buzzer, state: this.current });
  }

  private releaseAll(): void {
    for (const wired of this.wired.splice(0)) {
      try {
        wired.pin.release();
      } catch (err) {
        this.log.warning('light pin release failed', {
          role: wired.output,
          bcm: wired.bcm,
          error: err instanceof Error ? err.message : String(err),
        });
      }
    }
  }
}
