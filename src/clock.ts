/**
 * The one clock of the box. Time is injected so that a 30 s password wait runs in milliseconds in unit
 * tests, and so that the journal's wall-clock stamps and the waits come from the same source.
 */
import { existsSync } from 'node:fs';

export interface Clock {
  /** Wall-clock milliseconds since the epoch (may be wrong on a Pi before NTP sync). */
  now(): number;
  /** Resolves after `ms`, or rejects with the signal's reason when it is aborted first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, Math.max(0, ms));
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  },
};

/**
 * A virtual clock for tests: `sleep` moves virtual time forward at once (on the next turn of the event
 * loop), so waits cost nothing but their order is kept. Several sleepers wake in order of their deadline.
 */
export class VirtualClock implements Clock {
  private current: number;
  private sleepers: { at: number; seq: number; wake: () => void }[] = [];
  private seq = 0;
  private scheduled = false;

  constructor(start = Date.UTC(2026, 10, 29, 8, 0, 0)) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  /** Moves time forward by hand (for example to make a clock jump). */
  advance(ms: number): void {
    this.current += ms;
  }

  /** Sets the wall clock, backwards too (a Pi booting without network). */
  set(ms: number): void {
    this.current = ms;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const entry = {
        at: this.current + Math.max(0, ms),
        seq: this.seq++,
        wake: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = (): void => {
        this.sleepers = this.sleepers.filter((s) => s !== entry);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.sleepers.push(entry);
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // setImmediate lets pending I/O (an HTTPS answer, a journal write) run before virtual time jumps.
    setImmediate(() => {
      this.scheduled = false;
      if (this.sleepers.length === 0) return;
      this.sleepers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.sleepers.shift()!;
      if (next.at > this.current) this.current = next.at;
      next.wake();
      if (this.sleepers.length > 0) this.schedule();
    });
  }
}

/** The earliest time a box can believe: a Pi has no real-time clock, and anything before this was never set. */
export const CLOCK_FLOOR_MS = Date.UTC(2025, 0, 1);

/** Where systemd-timesyncd says whether the clock was synchronised since boot. */
export const TIMESYNC_DIR = '/run/systemd/timesync';
export const TIMESYNC_FLAG = `${TIMESYNC_DIR}/synchronized`;

/** Not before CLOCK_FLOOR_MS: the clock was set at some point. */
export function clockPlausible(now: number): boolean {
  return now >= CLOCK_FLOOR_MS;
}

/**
 * The clock is trusted when it is plausible and, where systemd-timesyncd runs, once it has synchronised at
 * least once since boot. Until then no WeChat Pay call is made (TLS and signatures need the time).
 */
export function clockTrusted(now: number, timesyncDir: string = TIMESYNC_DIR): boolean {
  if (!clockPlausible(now)) return false;
  if (!existsSync(timesyncDir)) return true;
  return existsSync(`${timesyncDir}/synchronized`);
}
