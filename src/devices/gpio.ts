/**
 * The GPIO seam under the customer light and buzzer: the indicator sees only `GpioBackend`/`OutputPin`, so a
 * libgpiod backend can replace onoff without touching the patterns.
 *
 * On kernel 6.6+ the sysfs GPIO numbers are not BCM numbers: every chip gets a dynamic base (512 is common,
 * 571 is reported for the RP1 on a Pi 5), and a plain BCM number fails to export with EINVAL. So the header
 * chip is found by its label and a pin is exported as `base + BCM`.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';

export interface OutputPin {
  write(on: boolean): void;
  /** Drives the pin low and gives it back (unexport). */
  release(): void;
}

export interface GpioBackend {
  readonly available: boolean;
  /** Why the backend is not available, for the log line that says the light is dark. */
  readonly reason?: string;
  open(bcm: number, role: string): OutputPin;
}

export interface ChipInfo {
  path: string;
  label: string;
  base: number;
  ngpio: number;
}

/** The chip wired to the 40-pin header, in order of preference: Pi 5 (RP1), Pi 4, Pi 3 / Zero. */
export const HEADER_CHIP_LABELS: readonly string[] = ['pinctrl-rp1', 'pinctrl-bcm2711', 'pinctrl-bcm2835'];

const SYSFS_GPIO = '/sys/class/gpio';

/** An export or a write that the kernel refused, naming the pin in every numbering a technician may need. */
export class GpioError extends Error {
  constructor(
    /** The errno code (`EINVAL`, `EACCES`, `EBUSY` ...) or `GPIO_ERROR` when there was none. */
    readonly code: string,
    readonly bcm: number,
    readonly sysfs: number,
    readonly chip: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'GpioError';
  }
}

function readTrimmed(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

/** Every `gpiochipN` under the sysfs GPIO class, sorted by base; entries that cannot be read are skipped. */
export function readChips(sysfsRoot: string = SYSFS_GPIO): ChipInfo[] {
  let names: string[];
  try {
    names = readdirSync(sysfsRoot);
  } catch {
    return [];
  }
  const chips: ChipInfo[] = [];
  for (const name of names) {
    if (!/^gpiochip[0-9]+$/.test(name)) continue;
    const path = join(sysfsRoot, name);
    const label = readTrimmed(join(path, 'label'));
    const base = Number.parseInt(readTrimmed(join(path, 'base')) ?? '', 10);
    const ngpio = Number.parseInt(readTrimmed(join(path, 'ngpio')) ?? '', 10);
    if (label === null || !Number.isInteger(base) || !Number.isInteger(ngpio) || base < 0 || ngpio <= 0) continue;
    chips.push({ path, label, base, ngpio });
  }
  return chips.sort((a, b) => a.base - b.base);
}

export function headerChip(chips: ChipInfo[]): ChipInfo | null {
  for (const label of HEADER_CHIP_LABELS) {
    const chip = chips.find((c) => c.label === label);
    if (chip) return chip;
  }
  return null;
}

export function sysfsNumber(chip: ChipInfo, bcm: number): number {
  if (!Number.isInteger(bcm) || bcm < 0 || bcm >= chip.ngpio) {
    throw new RangeError(`BCM pin ${bcm} is not a line of ${chip.label} (lines 0-${chip.ngpio - 1})`);
  }
  return chip.base + bcm;
}

/** The part of onoff's `Gpio` this backend uses; tests hand in a fake to exercise a Pi without one. */
export interface GpioLine {
  writeSync(value: 0 | 1): void;
  unexport(): void;
}
export interface GpioClass {
  readonly accessible: boolean;
  new (gpio: number, direction: 'low'): GpioLine;
}

function loadOnoff(): GpioClass | string {
  try {
    // Loaded on demand so that a machine whose native `epoll` build failed still runs with a dark light.
    const require = createRequire(import.meta.url);
    return (require('onoff') as typeof import('onoff')).Gpio;
  } catch (err) {
    return `onoff cannot be loaded: ${err instanceof Error ? err.message : String(err)}`;
  }
}

function unavailable(reason: string): GpioBackend {
  return {
    available: false,
    reason,
    open(bcm: number, role: string): OutputPin {
      throw new Error(`GPIO not available (${reason}): cannot open ${role} on BCM ${bcm}`);
    },
  };
}

export function onoffBackend(options: { log: Logger; sysfsRoot?: string; gpio?: GpioClass }): GpioBackend {
  const { log } = options;
  const Gpio = options.gpio ?? loadOnoff();
  if (typeof Gpio === 'string') {
    log.debug('GPIO not available', { reason: Gpio });
    return unavailable(Gpio);
  }
  // `accessible` opens /sys/class/gpio/export for writing: false without sysfs GPIO, outside the gpio group, or
  // under ProtectKernelTunables=yes (a read-only /sys).
  if (!Gpio.accessible) {
    const reason = 'no writable /sys/class/gpio/export';
    log.debug('GPIO not available', { reason });
    return unavailable(reason);
  }
  const chips = readChips(options.sysfsRoot);
  const chip = headerChip(chips);
  if (!chip) {
    const seen = chips.map((c) => `${c.label}@${c.base}`).join(',') || 'none';
    const reason = `no header GPIO chip (${HEADER_CHIP_LABELS.join(', ')}) among chips: ${seen}`;
    log.debug('GPIO not available', { reason });
    return unavailable(reason);
  }
  const header = chip;
  return {
    available: true,
    open(bcm: number, role: string): OutputPin {
      const sysfs = sysfsNumber(header, bcm);
      let line: GpioLine;
      try {
        // 'low' exports the pin as an output already driven low, so the buzzer never chirps on start-up.
        line = new Gpio(sysfs, 'low');
      } catch (err) {
        const code = (err as NodeJS.ErrnoException | null)?.code ?? 'GPIO_ERROR';
        const hint = code === 'EINVAL' ? ' (the kernel does not know this sysfs number: check the chip base)' : '';
        throw new GpioError(
          code,
          bcm,
          sysfs,
          header.label,
          `cannot export ${role} GPIO: BCM ${bcm} = sysfs ${sysfs} on ${header.label} (base ${header.base}): ${code}${hint}`,
          { cause: err },
        );
      }
      log.info('GPIO pin ready', { role, bcm, sysfs, chip: header.label });
      let released = false;
      return {
        write(on: boolean): void {
          if (released) throw new Error(`${role} GPIO (BCM ${bcm}) was released`);
          line.writeSync(on ? 1 : 0);
        },
        release(): void {
          if (released) return;
          released = true;
          try {
            line.writeSync(0);
          } finally {
            line.unexport();
          }
        },
      };
    },
  };
}

export interface MemoryPinEvent {
  bcm: number;
  role: string;
  on: boolean;
  /** `clock.now()` when a clock was given, else `Date.now()`. */
  at: number;
}

export interface MemoryBackend extends GpioBackend {
  /** Every level each BCM pin was driven to, starting with the low it is opened at and ending with release's low. */
  readonly levels: Map<number, boolean[]>;
  /** The same levels in one list, stamped with the time they were written. */
  readonly timeline: MemoryPinEvent[];
  readonly roles: Map<number, string>;
  readonly released: Set<number>;
}

/** A backend for tests: records every level written. A write after release throws, as a closed fd would. */
export function memoryBackend(options: { clock?: Clock } = {}): MemoryBackend {
  const levels = new Map<number, boolean[]>();
  const timeline: MemoryPinEvent[] = [];
  const roles = new Map<number, string>();
  const released = new Set<number>();
  const now = (): number => (options.clock ? options.clock.now() : Date.now());
  return {
    available: true,
    levels,
    timeline,
    roles,
    released,
    open(bcm: number, role: string): OutputPin {
      if (!Number.isInteger(bcm) || bcm < 0) throw new RangeError(`BCM pin ${bcm} is not a pin number`);
      if (roles.has(bcm) && !released.has(bcm)) throw new Error(`BCM ${bcm} is already open as ${roles.get(bcm)}`);
      const record = (on: boolean): void => {
        let list = levels.get(bcm);
        if (!list) levels.set(bcm, (list = []));
        list.push(on);
        timeline.push({ bcm, role, on, at: now() });
      };
      roles.set(bcm, role);
      released.delete(bcm);
      record(false);
      let done = false;
      return {
        write(on: boolean): void {
          if (done) throw new Error(`${role} GPIO (BCM ${bcm}) was released`);
          record(on);
        },
        release(): void {
          if (done) return;
          done = true;
          record(false);
          released.add(bcm);
        },
      };
    },
  };
}
