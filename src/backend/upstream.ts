/**
 * The backend's way to WeChat Pay for many boxes at once (contract §8, "a call the backend could not send to
 * WeChat Pay promptly is answered as never sent").
 *
 * The backend's WechatPayClient keeps a pool of `slots` connections for micropay and orderquery. This gate lets
 * at most `slots` of those calls be under way at once, so the client never queues one behind another: its
 * timeout then counts WeChat Pay's time only. A call waits for a slot in arrival order, but never past
 * `sendWithinMs` after it arrived at the backend: it is then not sent at all, and the box is told so (an
 * `unsent` outcome), which ends its sale `FAILED ... OFFLINE` at once instead of a micropay that leaves late,
 * perhaps after the box has given up and reversed an order WeChat Pay had not seen yet.
 */

export const SEND_WITHIN_MS = 5_000;

interface Waiter {
  grant: () => void;
  timer: NodeJS.Timeout;
}

export class UpstreamGate {
  private busy = 0;
  private readonly queue: Waiter[] = [];
  /** Calls answered as never sent because no slot came in time (for the log and tests). */
  late = 0;

  constructor(
    readonly slots: number,
    private readonly sendWithinMs: number = SEND_WITHIN_MS,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!Number.isSafeInteger(slots) || slots < 1) throw new TypeError('slots must be a whole number >= 1');
  }

  /** Calls under way and waiting. */
  get load(): { busy: number; waiting: number } {
    return { busy: this.busy, waiting: this.queue.length };
  }

  /** Whether a call that arrived at `arrivedAt` (performance.now()) may still be sent. */
  inTime(arrivedAt: number): boolean {
    return this.now() - arrivedAt <= this.sendWithinMs;
  }

  /**
   * A slot for a call that arrived at `arrivedAt`: the function that gives it back, or null when none came
   * within `sendWithinMs` of the arrival (the call must not be sent).
   */
  acquire(arrivedAt: number): Promise<(() => void) | null> {
    const left = this.sendWithinMs - (this.now() - arrivedAt);
    if (left < 0) {
      this.late += 1;
      return Promise.resolve(null);
    }
    if (this.busy < this.slots && this.queue.length === 0) {
      this.busy += 1;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve) => {
      const waiter: Waiter = {
        grant: () => {
          clearTimeout(waiter.timer);
          this.busy += 1;
          resolve(this.releaser());
        },
        timer: setTimeout(() => {
          const at = this.queue.indexOf(waiter);
          if (at >= 0) this.queue.splice(at, 1);
          this.late += 1;
          resolve(null);
        }, left),
      };
      this.queue.push(waiter);
    });
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.busy -= 1;
      const next = this.queue.shift();
      next?.grant();
    };
  }
}
