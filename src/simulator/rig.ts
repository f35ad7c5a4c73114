import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { GatewaySimulator, type GatewaySimulatorOptions } from './gateway.js';
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../runtime.js';
import { packageRoot } from './package-root.js';
import { LineChannel, VirtualPorts } from './ptys.js';
import type { Logger } from '../log.js';
import { WechatPayClient } from '../wechatpay/client.js';

/**
 * A counter on a bench: the gateway simulator, two virtual serial ports, credential files, and the real
 * daemon (`scanbox run`, the built dist/cli.js) in its own process. `scanbox demo` and the end-to-end
 * tests both drive the box through it, as a cash register and a scanner would.
 */

/** The merchant a rig plays: fixed, harmless ids and an API key of its own. */
export interface RigMerchant {
  readonly mchId: string;
  readonly appId: string;
  /** 32 random characters of [A-Za-z0-9], new for every rig: no fixed key ships with the box. */
  readonly apiKey: string;
}

const KEY_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** An API key as the merchant platform makes them: 32 characters of [A-Za-z0-9], uniformly drawn. */
function randomApiKey(): string {
  let key = '';
  while (key.length < 32) {
    for (const byte of randomBytes(48)) {
      // 248 = 4 * 62: bytes above it are dropped, so that every character is equally likely.
      if (byte < 248 && key.length < 32) key += KEY_ALPHABET[byte % 62];
    }
  }
  return key;
}

const CLI = join(packageRoot(), 'dist', 'cli.js');

/** What systemd or the shell would hand a daemon that the rig's daemon must not inherit. */
const INHERITED_NOT = new Set(['NODE_OPTIONS', 'CREDENTIALS_DIRECTORY', 'STATE_DIRECTORY', 'NOTIFY_SOCKET']);

export interface RigOptions {
  /** Extra or overriding SCANBOX_* settings for the daemon. */
  env?: Record<string, string>;
  simulator?: Partial<GatewaySimulatorOptions>;
  /** Called with every line the daemon prints, as it arrives. */
  onLog?: (line: string) => void;
  /**
   * A customer-display line instead of the register line (contract §10): a virtual port `display` for the
   * register's display output and, with `out`, a second one `display-out` where the real display would be.
   */
  display?: { out?: boolean };
}

/**
 * A box's configuration in merchant-backend mode (contract §8), over a rig's: the merchant's ids and secrets
 * unset (empty: they are not on such a box), SCANBOX_BACKEND naming the backend (several: a chain, in that
 * order), and the three files `scanbox backend enroll` made for the box.
 */
export function backendModeEnv(backend: string | readonly string[], files: { cert: string; key: string; ca: string }): Record<string, string> {
  return {
    SCANBOX_MCH_ID: '',
    SCANBOX_APPID: '',
    SCANBOX_API_KEY_FILE: '',
    SCANBOX_CERT_FILE: '',
    SCANBOX_CERT_KEY_FILE: '',
    SCANBOX_API_BASE: '',
    SCANBOX_API_BACKUP_BASE: '',
    SCANBOX_BACKEND: typeof backend === 'string' ? backend : backend.join(','),
    SCANBOX_BACKEND_CERT_FILE: files.cert,
    SCANBOX_BACKEND_KEY_FILE: files.key,
    SCANBOX_BACKEND_CA_FILE: files.ca,
  };
}

export interface SpawnedDaemon {
  daemon: Daemon;
  /** performance.now() just before the spawn. */
  spawnedAt: number;
  /** performance.now() when it printed "ready for sales" (resolved once both ports are open too). */
  ready: Promise<number>;
}

export class Daemon {
  readonly lines: string[] = [];
  /** The exit code (-1 for a signal), as soon as the process has exited. */
  readonly exited: Promise<number | null>;
  /** The same, once its output has been read to the end too: no line comes after this. */
  readonly closed: Promise<number | null>;
  private isClosed = false;
  private waiters: {
    test: (line: string) => boolean;
    from: number;
    resolve: (line: string) => void;
    reject: (err: Error) => void;
  }[] = [];

  constructor(readonly process: ChildProcess, onLog?: (line: string) => void) {
    const take = (line: string): void => {
      this.lines.push(line);
      onLog?.(line);
      const index = this.lines.length - 1;
      for (const waiter of [...this.waiters]) {
        if (index >= waiter.from && waiter.test(line)) {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          waiter.resolve(line);
        }
      }
    };
    createInterface({ input: process.stdout! }).on('line', take);
    createInterface({ input: process.stderr! }).on('line', take);
    this.exited = new Promise((resolve) => process.on('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))));
    this.closed = new Promise((resolve) => process.on('close', (code, signal) => resolve(code ?? (signal ? -1 : null))));
    // A line that has not come by the time the output ends never will: waiting on would only hold a timer.
    void this.closed.then((code) => {
      this.isClosed = true;
      const waiters = this.waiters;
      this.waiters = [];
      for (const waiter of waiters) waiter.reject(this.goneError(code));
    });
  }

  private goneError(code: number | null): Error {
    return new Error(`daemon exited (code ${code}) without printing the line waited for; last lines:\n${this.lines.slice(-15).join('\n')}`);
  }

  get mark(): number {
    return this.lines.length;
  }

  /** The first log line at or after `from` matching, waiting up to `timeoutMs`. */
  waitFor(match: RegExp, timeoutMs = 15000, from = 0): Promise<string> {
    const found = this.lines.slice(from).find((l) => match.test(l));
    if (found !== undefined) return Promise.resolve(found);
    if (this.isClosed) return Promise.reject(this.goneError(this.process.exitCode));
    return new Promise((resolve, reject) => {
      const waiter = {
        test: (l: string) => match.test(l),
        from,
        resolve: (line: string) => {
          clearTimeout(timer);
          resolve(line);
        },
        reject: (err: Error) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`daemon printed no line matching ${String(match)} within ${timeoutMs} ms; last lines:\n${this.lines.slice(-15).join('\n')}`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }
}

export class Rig {
  daemon: Daemon | null = null;
  readonly env: Record<string, string>;

  private constructor(
    readonly dir: string,
    readonly sim: GatewaySimulator,
    readonly ports: VirtualPorts,
    readonly dbPath: string,
    /** The merchant the daemon is configured as and the simulator expects (its API key is this rig's own). */
    readonly merchant: RigMerchant,
    env: Record<string, string>,
    private readonly onLog: ((line: string) => void) | undefined,
  ) {
    this.env = env;
  }

  static async start(options: RigOptions = {}): Promise<Rig> {
    const dir = mkdtempSync(join(tmpdir(), 'scanbox-rig-'));
    const merchant: RigMerchant = Object.freeze({ mchId: '1900000109', appId: 'wx2421b1c4370ec43b', apiKey: randomApiKey() });
    const sim = await GatewaySimulator.start({ ...merchant, ...options.simulator });
    const lines = options.display ? ['scanner', 'display', ...(options.display.out ? ['display-out'] : [])] : ['scanner', 'register'];
    const ports = await VirtualPorts.start(dir, lines);
    const files = {
      apikey: join(dir, 'apikey'),
      cert: join(dir, 'apiclient_cert.pem'),
      key: join(dir, 'apiclient_key.pem'),
      ca: join(dir, 'simulator-ca.pem'),
    };
    writeFileSync(files.apikey, merchant.apiKey + '\n', { mode: 0o600 });
    writeFileSync(files.cert, sim.pki.client.certPem);
    writeFileSync(files.key, sim.pki.client.keyPem, { mode: 0o600 });
    writeFileSync(files.ca, sim.pki.ca.certPem);
    const dbPath = join(dir, 'scanbox.db');
    const env: Record<string, string> = {
      SCANBOX_MCH_ID: merchant.mchId,
      SCANBOX_APPID: merchant.appId,
      SCANBOX_API_KEY_FILE: files.apikey,
      SCANBOX_CERT_FILE: files.cert,
      SCANBOX_CERT_KEY_FILE: files.key,
      SCANBOX_API_BASE: sim.origin,
      SCANBOX_API_BACKUP_BASE: 'none',
      SCANBOX_SCANNER_PORT: ports.path('scanner'),
      ...(options.display
        ? { SCANBOX_DISPLAY_PORT: ports.path('display'), ...(options.display.out ? { SCANBOX_DISPLAY_OUT_PORT: ports.path('display-out') } : {}) }
        : { SCANBOX_REGISTER_PORT: ports.path('register') }),
      SCANBOX_DB: dbPath,
      SCANBOX_DEVICE_ID: 'BENCH01',
      SCANBOX_LOG_LEVEL: 'debug',
      // The simulator's CA, trusted the way a test gateway is trusted in the field.
      NODE_EXTRA_CA_CERTS: files.ca,
      // Each bench has its own control socket, as systemd's RuntimeDirectory= gives the daemon one.
      RUNTIME_DIRECTORY: dir,
      ...options.env,
    };
    return new Rig(dir, sim, ports, dbPath, merchant, env, options.onLog);
  }

  /**
   * What the merchant's server holds when `scanbox backend` runs against this rig: the merchant's ids, API key
   * and client certificate, this rig's simulator as WeChat Pay (no backup domain) with its CA trusted.
   */
  merchantEnv(): Record<string, string> {
    const env = this.env;
    return {
      SCANBOX_MCH_ID: this.merchant.mchId,
      SCANBOX_APPID: this.merchant.appId,
      SCANBOX_API_KEY_FILE: env.SCANBOX_API_KEY_FILE!,
      SCANBOX_CERT_FILE: env.SCANBOX_CERT_FILE!,
      SCANBOX_CERT_KEY_FILE: env.SCANBOX_CERT_KEY_FILE!,
      SCANBOX_API_BASE: this.sim.origin,
      SCANBOX_API_BACKUP_BASE: 'none',
      NODE_EXTRA_CA_CERTS: env.NODE_EXTRA_CA_CERTS!,
    };
  }

  /** WeChat Pay's client as a backend in this process holds it: this rig's merchant against its simulator. */
  merchantClient(log: Logger): WechatPayClient {
    return new WechatPayClient({
      merchant: { ...this.merchant, signType: 'HMAC-SHA256' },
      apiBase: this.sim.origin,
      backupBase: null,
      ca: this.sim.pki.ca.certPem,
      certificate: { kind: 'pem', certPem: this.sim.pki.client.certPem, keyPem: this.sim.pki.client.keyPem },
      log,
    });
  }

  get register(): LineChannel {
    return this.ports.channel('register');
  }

  get scanner(): LineChannel {
    return this.ports.channel('scanner');
  }

  /** The register's side of the customer-display line (a rig started with `display`). */
  get display(): LineChannel {
    return this.ports.channel('display');
  }

  /** The real display's side of it (`display: { out: true }`). */
  get displayOut(): LineChannel {
    return this.ports.channel('display-out');
  }

  /**
   * Starts `scanbox run` as the unit does (the V8 flags and environment of src/runtime.ts) and returns at once;
   * `ready` resolves with the instant it printed `readyLine` (default: ready for sales) with both ports open,
   * and rejects when it exits first or is not there within `timeoutMs`. Nothing is left waiting once `ready`
   * has settled, so a daemon killed before READY (the crash matrix does it on purpose, hundreds of times)
   * holds no timer; a caller that expects no READY (a daemon that must exit) may ignore `ready`. `spawnedAt`
   * is taken just before the spawn, for start-up timing.
   *
   * The environment is this process's less anything that would configure the daemon from outside the rig
   * (SCANBOX_*, NODE_OPTIONS, the directories and the notify socket systemd would pass), then the rig's,
   * then `env`. `wrap` runs it through another program first (`setpriv ...`, to drop root).
   */
  spawnDaemon(
    options: {
      env?: Record<string, string>;
      timeoutMs?: number;
      onLog?: (line: string) => void;
      wrap?: readonly string[];
      readyLine?: RegExp;
    } = {},
  ): SpawnedDaemon {
    const base: Record<string, string> = {};
    for (const [key, value] of Object.entries(process.env)) {
      if (value !== undefined && !key.startsWith('SCANBOX_') && !INHERITED_NOT.has(key)) base[key] = value;
    }
    const readyLine = options.readyLine ?? /ready for sales/;
    const seen = { ready: false, scanner: false, register: false };
    let markReady: (at: number) => void = () => undefined;
    const ready = new Promise<number>((resolve) => (markReady = resolve));
    let readyAt = 0;
    const onLog = options.onLog ?? this.onLog;
    const argv = [...(options.wrap ?? []), process.execPath, ...DAEMON_NODE_FLAGS, CLI, 'run'];
    const spawnedAt = performance.now();
    const child = spawn(argv[0]!, argv.slice(1), {
      env: { ...base, ...DAEMON_ENV, ...this.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const daemon = new Daemon(child, (line) => {
      onLog?.(line);
      if (!seen.ready && readyLine.test(line)) {
        seen.ready = true;
        readyAt = performance.now();
      }
      if (/scanner port (open|back)/.test(line)) seen.scanner = true;
      if (/(register|display) port (open|back)/.test(line)) seen.register = true;
      if (seen.ready && seen.scanner && seen.register) markReady(readyAt);
    });
    this.daemon = daemon;
    const timeoutMs = options.timeoutMs ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    const started = Promise.race([
      ready,
      daemon.closed.then((code): number => {
        throw new Error(`daemon exited with code ${code} before it printed ${String(readyLine)} with both ports open:\n${daemon.lines.slice(-20).join('\n')}`);
      }),
      new Promise<number>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`daemon printed no ${String(readyLine)} with both ports open within ${timeoutMs} ms:\n${daemon.lines.slice(-20).join('\n')}`)),
          timeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    // A start that fails is reported through `ready` only.
    started.catch(() => undefined);
    return { daemon, spawnedAt, ready: started };
  }

  /** Starts `scanbox run` and waits until it says it is ready for sales with both ports open. */
  async startDaemon(extraEnv: Record<string, string> = {}): Promise<Daemon> {
    const { daemon, ready } = this.spawnDaemon({ env: extraEnv });
    await ready;
    return daemon;
  }

  /** SIGTERM, as systemd stops it; resolves with the exit code. */
  async stopDaemon(): Promise<number | null> {
    const daemon = this.daemon;
    if (!daemon || daemon.process.exitCode !== null) return daemon?.process.exitCode ?? null;
    daemon.process.kill('SIGTERM');
    return daemon.exited;
  }

  /** SIGKILL, as a power cut would. */
  async killDaemon(): Promise<void> {
    const daemon = this.daemon;
    if (!daemon || daemon.process.exitCode !== null) return;
    daemon.process.kill('SIGKILL');
    await daemon.exited;
  }

  async close(): Promise<void> {
    await this.killDaemon();
    await this.ports.close();
    await this.sim.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
