import { Agent, buildConnector } from 'undici';
import { HEARTBEAT_PATH, type HeartbeatReport } from '../backend/heartbeat.js';
import { messageOf } from '../errors.js';
import type { Logger } from '../log.js';

/**
 * The box's heartbeat to its backend (contract §11): one a minute, one at start, and one at once when the health
 * changes (`watch()` is asked every second). It has its own connection, its own short timeout and its own timer,
 * so a heartbeat never waits for a sale nor a sale for a heartbeat; a failed one is dropped (the next minute
 * says everything again) and logged at most once per `logEveryMs`, with one line when they get through again.
 */

/** How long the heartbeat's connection is kept idle: past the minute between two heartbeats, under the backend's 150 s. */
export const KEEP_ALIVE_MS = 120_000;

export interface HeartbeatSenderOptions {
  origin: string;
  certificate: { certPem: string; keyPem: string };
  caPem: string;
  report: () => HeartbeatReport;
  /** A value that changes when a heartbeat should go at once (figures.ts healthWatchKey). */
  watch: () => string;
  log: Logger;
  everyMs?: number;
  watchMs?: number;
  timeoutMs?: number;
  logEveryMs?: number;
}

export class HeartbeatSender {
  private readonly o: Required<Omit<HeartbeatSenderOptions, 'certificate' | 'caPem'>>;
  private readonly agent: Agent;
  private timer: NodeJS.Timeout | null = null;
  private watcher: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  private again = false;
  private lastWatch = '';
  private failingSince: number | null = null;
  private lastFailureLog = 0;
  private failures = 0;
  /** Heartbeats the backend took, and those that failed (for tests and the metrics file). */
  sent = 0;
  failed = 0;

  constructor(options: HeartbeatSenderOptions) {
    this.o = { everyMs: 60_000, watchMs: 1000, timeoutMs: 5000, logEveryMs: 600_000, ...options };
    const connect = buildConnector({ ca: [options.caPem], cert: options.certificate.certPem, key: options.certificate.keyPem, minVersion: 'TLSv1.2', timeout: this.o.timeoutMs });
    // One TLS connection kept across minutes (the backend keeps idle ones 150 s, backend/server.ts): a heartbeat
    // on a kept connection costs the backend a fraction of one on a new connection (whose handshake verifies the
    // box's certificate in full: the backend refuses session tickets on purpose).
    this.agent = new Agent({ connect, connections: 1, pipelining: 1, keepAliveTimeout: KEEP_ALIVE_MS, keepAliveMaxTimeout: KEEP_ALIVE_MS, maxResponseSize: 16 * 1024 });
  }

  start(): void {
    this.lastWatch = this.safeWatch();
    this.beat();
    this.timer = setInterval(() => this.beat(), this.o.everyMs);
    this.watcher = setInterval(() => {
      const now = this.safeWatch();
      if (now !== this.lastWatch) {
        this.lastWatch = now;
        this.beat();
      }
    }, this.o.watchMs);
    this.timer.unref();
    this.watcher.unref();
  }

  /** Sends one now (one at a time: asked while one is under way, it goes right after). */
  beat(): void {
    if (this.inFlight) {
      this.again = true;
      return;
    }
    this.inFlight = this.sendOnce().finally(() => {
      this.inFlight = null;
      if (this.again) {
        this.again = false;
        this.beat();
      }
    });
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (this.watcher) clearInterval(this.watcher);
    this.timer = this.watcher = null;
    this.again = false;
    await this.inFlight?.catch(() => undefined);
    await this.agent.close().catch(() => undefined);
  }

  private safeWatch(): string {
    try {
      return this.o.watch();
    } catch {
      return this.lastWatch;
    }
  }

  private async sendOnce(): Promise<void> {
    const signal = AbortSignal.timeout(this.o.timeoutMs);
    try {
      const report = this.o.report();
      const response = await this.agent.request({
        origin: this.o.origin,
        path: HEARTBEAT_PATH,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(report),
        signal,
        headersTimeout: this.o.timeoutMs,
        bodyTimeout: this.o.timeoutMs,
      });
      const text = await response.body.text();
      if (response.statusCode !== 204 && response.statusCode !== 200) {
        let why = `HTTP ${response.statusCode}`;
        try {
          const refused = (JSON.parse(text) as { refused?: { code?: unknown } }).refused;
          if (typeof refused?.code === 'string') why = `${why} ${refused.code.slice(0, 40)}`;
        } catch {
          // not JSON: the status says enough
        }
        throw new Error(`the backend refused the heartbeat (${why})`);
      }
      this.sent++;
      if (this.failingSince !== null) {
        this.o.log.info('heartbeat: the backend hears the box again', { failed: this.failures });
        this.failingSince = null;
        this.failures = 0;
      }
    } catch (error) {
      this.failed++;
      this.failures++;
      const now = Date.now();
      if (this.failingSince === null) this.failingSince = now;
      if (this.failures === 1 || now - this.lastFailureLog >= this.o.logEveryMs) {
        this.lastFailureLog = now;
        this.o.log.warning('heartbeat not delivered (sales are not affected)', {
          error: signal.aborted ? `no answer within ${this.o.timeoutMs} ms` : messageOf(error),
          failed: this.failures,
        });
      }
    }
  }
}
