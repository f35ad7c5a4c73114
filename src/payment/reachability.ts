import type { Logger } from '../log.js';
import { reachOf, type ApiOutcome } from '../wechatpay/client.js';

/**
 * Whether WeChat Pay can be reached, learnt from every answer (or its absence) the engine and the probe get.
 * Two failures in a row make the box OFFLINE (new sales are refused at once instead of making each customer
 * wait out the unknown-result loop); any real answer makes it reachable again.
 *
 * Built before recovery starts, so the outcomes of recovery's own calls count too.
 */
export class Reachability {
  private failures = 0;
  private text: string | null = null;
  private readonly listeners: (() => void)[] = [];

  constructor(
    private readonly log: Logger,
    /**
     * The API base micropay goes to (as the client names it in `origin`). orderquery and reverse fail over to
     * the backup domain, micropay never does: an answer from any other origin means the primary cannot be
     * reached, so no payment can be sent. Without it every answer counts as reachable.
     */
    private readonly primaryOrigin?: string,
  ) {}

  /** Why WeChat Pay counts as unreachable, or null. */
  get offlineText(): string | null {
    return this.text;
  }

  /** Whether anything failed since the last real answer (the probe asks only then). */
  get doubtful(): boolean {
    return this.failures > 0;
  }

  /** Called whenever the verdict changes. */
  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  note(outcome: ApiOutcome): void {
    const reach = reachOf(outcome);
    const backupOnly =
      reach !== 'unreachable' && this.primaryOrigin !== undefined && outcome.origin !== null && outcome.origin !== this.primaryOrigin;
    if (reach === 'unreachable' || backupOnly) {
      this.failures++;
      if (this.failures === 2) {
        const failure = outcome.kind === 'unknown' && !backupOnly ? outcome.failure : 'BACKUP_ONLY';
        this.text = backupOnly
          ? 'WeChat Pay unreachable (only the backup domain answers, and payments go to the primary)'
          : `WeChat Pay unreachable (${failure})`;
        this.log.error('WeChat Pay unreachable: new sales are refused until it answers again', { failure });
        this.changed();
      }
    } else if (reach === 'answered') {
      const was = this.text;
      if (was) this.log.info('WeChat Pay reachable again');
      this.failures = 0;
      this.text = null;
      if (was) this.changed();
    }
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }
}
