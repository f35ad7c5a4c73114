import type { Clock } from '../../clock.js';

/**
 * The display line's bytes cut into bursts: a burst ends when the line has been quiet for the settle time
 * (display.md rule 2: 300-500 ms, above the longest pauses real drivers make between the messages of one
 * update). Its bytes are kept as they came, with when each chunk came, for the journal and `scanbox display`.
 * Memory is bounded: past `maxBytes` a burst keeps counting but stops keeping, and is marked truncated.
 */

export interface Burst {
  seq: number;
  /** Wall ms of its first and last byte. */
  startedAt: number;
  endedAt: number;
  /** How long the line had been quiet before it (null for the first burst). */
  quietBeforeMs: number | null;
  /** The longest pause between two of its chunks. */
  longestGapMs: number;
  /** Its bytes, at most `maxBytes` of them. */
  bytes: Buffer;
  /** How many bytes it had (more than `bytes.length` when truncated). */
  length: number;
  truncated: boolean;
}

export const MAX_BURST_BYTES = 4096;

export class BurstSplitter {
  private chunks: Buffer[] = [];
  private kept = 0;
  private length = 0;
  private startedAt = 0;
  private lastAt = 0;
  private longestGap = 0;
  private previousEnd: number | null = null;
  private seq = 0;
  private quiet: AbortController | null = null;
  private closed = false;

  constructor(
    private readonly clock: Clock,
    private readonly settleMs: number,
    private readonly onStart: () => void,
    private readonly onEnd: (burst: Burst) => void,
    private readonly maxBytes = MAX_BURST_BYTES,
  ) {
    if (!Number.isSafeInteger(settleMs) || settleMs <= 0) throw new TypeError(`settle time must be a positive whole number of ms: ${settleMs}`);
  }

  /** A burst is under way: bytes came and the line has not been quiet for the settle time since. */
  get busy(): boolean {
    return this.quiet !== null;
  }

  push(chunk: Buffer): void {
    if (this.closed || chunk.length === 0) return;
    const at = this.clock.now();
    if (this.quiet === null) {
      this.startedAt = at;
      this.lastAt = at;
      this.longestGap = 0;
      this.onStart();
    } else {
      this.quiet.abort();
      this.longestGap = Math.max(this.longestGap, at - this.lastAt);
    }
    this.lastAt = at;
    this.length += chunk.length;
    if (this.kept < this.maxBytes) {
      const part = chunk.subarray(0, this.maxBytes - this.kept);
      this.chunks.push(Buffer.from(part));
      this.kept += part.length;
    }
    const quiet = new AbortController();
    this.quiet = quiet;
    this.clock.sleep(this.settleMs, quiet.signal).then(
      () => {
        if (this.quiet === quiet) this.finish();
      },
      () => undefined,
    );
  }

  private finish(): void {
    this.quiet = null;
    const burst: Burst = {
      seq: ++this.seq,
      startedAt: this.startedAt,
      endedAt: this.lastAt,
      quietBeforeMs: this.previousEnd === null ? null : this.startedAt - this.previousEnd,
      longestGapMs: this.longestGap,
      bytes: Buffer.concat(this.chunks),
      length: this.length,
      truncated: this.length > this.kept,
    };
    this.previousEnd = this.lastAt;
    this.chunks = [];
    this.kept = 0;
    this.length = 0;
    this.onEnd(burst);
  }

  close(): void {
    this.closed = true;
    this.quiet?.abort();
    this.quiet = null;
  }
}
