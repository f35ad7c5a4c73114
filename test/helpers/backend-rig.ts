import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { enrolBox } from '../../src/backend/enrol.js';
import { BOX_CA_FILE, BOX_CERT_FILE, BOX_KEY_FILE, BackendPki, writeBoxFiles } from '../../src/backend/pki.js';
import { BackendServer, type BackendPolicy, type BackendServerOptions } from '../../src/backend/server.js';
import { SqliteBackendStore, type BoxPolicy } from '../../src/backend/store.js';
import { memoryLogger, type Logger } from '../../src/log.js';
import { Daemon, type Rig } from '../../src/simulator/rig.js';
import type { WechatPayClient } from '../../src/wechatpay/client.js';
import { CLI, baseEnv } from './cli.js';

export { cli } from './cli.js';
export { backendModeEnv } from '../../src/simulator/rig.js';

/**
 * The merchant-backend rig of the tests (contract §8). On top of the box's Rig (simulator, ptys, daemon; its
 * `merchantEnv()` and `merchantClient()` are what the merchant's server holds, `backendModeEnv()` a box's
 * configuration in backend mode): a backend in this process (`startBackendHere`), or `scanbox backend` as a
 * process of the built CLI (`startBackend`), the boxes' enrolled files, and payment codes. `openBackend` is the
 * backend's store, CA and server that test/backend's own world builds on too.
 */

/** `scanbox backend` as a process; resolves once it listens (one that does not within 20 s is killed). */
export async function startBackend(env: Record<string, string>): Promise<Daemon> {
  const child = spawn(process.execPath, [CLI, 'backend'], { env: { ...baseEnv(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const daemon = new Daemon(child);
  try {
    await daemon.waitFor(/backend listening/, 20_000);
  } catch (error) {
    await kill(daemon);
    throw error;
  }
  return daemon;
}

/** SIGKILL, if it still runs; resolves once it has exited. */
export async function kill(daemon: Daemon | null): Promise<void> {
  if (daemon && daemon.process.exitCode === null && daemon.process.signalCode === null) {
    daemon.process.kill('SIGKILL');
    await daemon.exited;
  }
}

let n = 0;
/** A payment code no other test process makes. */
export const payCode = (): string => `13${String(process.pid % 100000).padStart(5, '0')}8${String(++n).padStart(10, '0')}`;

/** The three files `scanbox backend enroll --out DIR` (and writeBoxFiles) put in DIR for a box. */
export interface BoxFiles {
  cert: string;
  key: string;
  ca: string;
}

export function boxFilesIn(dir: string): BoxFiles {
  return { cert: join(dir, BOX_CERT_FILE), key: join(dir, BOX_KEY_FILE), ca: join(dir, BOX_CA_FILE) };
}

/** The backend's default policy in these tests: refunds and bills on, a generous amount limit and rate. */
export const POLICY: BackendPolicy = { maxAmountFen: 1_000_000, refunds: 'on', bills: 'on', ratePerMinute: 600 };

/** The server's options a test may set; its policy over POLICY. */
export type BackendExtras = Partial<Omit<BackendServerOptions, 'listen' | 'store' | 'pki' | 'client' | 'log' | 'policy'>> & { policy?: Partial<BackendPolicy> };

/** The backend's journal (SQLite) and CA in `dir`, and its server on 127.0.0.1 (any free port) over `client`. */
export async function openBackend(
  dir: string,
  client: BackendServerOptions['client'],
  log: Logger,
  options: BackendExtras = {},
): Promise<{ store: SqliteBackendStore; pki: BackendPki; server: BackendServer }> {
  const { policy, ...extras } = options;
  const store = SqliteBackendStore.open(join(dir, 'backend.db'));
  const pki = BackendPki.openOrCreate(dir, { hostname: 'backend.test' });
  const server = await BackendServer.start({ listen: { host: '127.0.0.1', port: 0 }, store, pki, client, policy: { ...POLICY, ...policy }, log, ...extras });
  return { store, pki, server };
}

/** A backend in this process: the real server, store and CA over real mutual TLS, with the rig's simulator as WeChat Pay. */
export interface BackendHere {
  store: SqliteBackendStore;
  pki: BackendPki;
  server: BackendServer;
  /** Its client of WeChat Pay. */
  upstream: WechatPayClient;
  log: Logger;
  /** Enrols a box and writes its three files in `out`: their paths. */
  enrol(deviceId: string, out: string, policy?: Partial<BoxPolicy>): Promise<BoxFiles>;
  close(): Promise<void>;
}

export async function startBackendHere(rig: Rig, dir: string, options: BackendExtras & { log?: Logger } = {}): Promise<BackendHere> {
  const { log = memoryLogger('debug'), ...extras } = options;
  const upstream = rig.merchantClient(log);
  const { store, pki, server } = await openBackend(dir, upstream, log, extras);
  return {
    store,
    pki,
    server,
    upstream,
    log,
    async enrol(deviceId, out, policy = {}) {
      const { certificate } = await enrolBox(pki, store, deviceId, { policy });
      return writeBoxFiles(out, certificate);
    },
    async close() {
      await server.close();
      await upstream.close();
      await store.close();
    },
  };
}
