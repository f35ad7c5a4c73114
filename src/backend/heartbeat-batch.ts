import type { BackendStore, NewHeartbeat } from './store.js';

/**
 * The backend's heartbeats written in batches (contract §11): 3,000 boxes send 50 a second, and one transaction
 * (one fsync on SQLite, one statement on PostgreSQL) for each would cost the backend more than everything else
 * a heartbeat does. A heartbeat waits at most `everyMs` (or until `max` are waiting) and is answered once its
 * batch is kept: 204 still means kept, and a batch that cannot be written fails each of its heartbeats as the
 * single write did. `close()` writes what is waiting (a clean stop loses none). One batch is written at a time.
 */
export class HeartbeatBatch {
  private pending: Array<{ heartbeat: NewHeartbeat; resolve: () => void; reject: (error: unknown) => void }> = [];
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> = Promise.resolve();
  /** Batches written, and heartbeats in them (for the bench and tests). */
  batches = 0;
  written = 0;

  constructor(
    private readonly store: Pick<BackendStore, 'recordHeartbeats'>,
    private readonly options: { everyMs: number; max: number } = { everyMs: 1000, max: 500 },
  ) {}

  /** Heartbeats waiting for their batch. */
  get waiting(): number {
    return this.pending.length;
  }

  /** Resolves when the heartbeat is in the store; rejects with the store's error. */
  add(heartbeat: NewHeartbeat): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ heartbeat, resolve, reject });
      if (this.pending.length >= this.options.max) void this.flush();
      else this.timer ??= setTimeout(() => void this.flush(), this.options.everyMs);
    });
  }

  /** Writes what is waiting now (after the batch being written, if any); resolves when it is written or failed. */
  flush(): Promise<void> {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return this.writing;
    this.writing = this.writing.then(async () => {
      try {
        await this.store.recordHeartbeats(batch.map((b) => b.heartbeat));
        this.batches += 1;
        this.written += batch.length;
        for (const b of batch) b.resolve();
      } catch (error) {
        for (const b of batch) b.reject(error);
      }
    });
    return this.writing;
  }

  close(): Promise<void> {
    return this.flush();
  }
}
