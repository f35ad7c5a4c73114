import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VirtualClock, type Clock } from '../../src/clock.js';
import { Journal } from '../../src/journal/journal.js';
import { memoryLogger } from '../../src/log.js';
import { PaymentEngine, type EngineOptions } from '../../src/payment/engine.js';
import { RefundEngine, type RefundEngineOptions } from '../../src/payment/refund.js';
import { GatewaySimulator } from '../../src/simulator/gateway.js';
import type { SignType } from '../../src/wechatpay/sign.js';
import { WechatPayClient, type WechatPayClientOptions } from '../../src/wechatpay/client.js';

export const MERCHANT = {
  mchId: '1900000109',
  appId: 'wx2421b1c4370ec43b',
  apiKey: 'a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6',
};
export const DEVICE_ID = 'TESTBOX1';

/** A fresh WeChat payment code (18 digits, 10-15) that has not been used in this process. */
let codeSeq = 0;
export function freshCode(prefix = '13'): string {
  codeSeq++;
  return prefix + String(process.pid % 1000000).padStart(6, '0') + String(codeSeq).padStart(10, '0');
}

export function tempDir(prefix = 'scanbox-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface WorldOptions {
  clock?: Clock;
  signType?: SignType;
  engine?: Partial<EngineOptions>;
  refunds?: Partial<RefundEngineOptions>;
  client?: Partial<WechatPayClientOptions>;
  dbPath?: string;
  simulator?: GatewaySimulator;
}

export interface World {
  clock: Clock;
  sim: GatewaySimulator;
  client: WechatPayClient;
  journal: Journal;
  engine: PaymentEngine;
  refunds: RefundEngine;
  log: ReturnType<typeof memoryLogger>;
  dir: string;
  dbPath: string;
  /** Reopens journal, client and engine on the same file (a restart of the box). */
  restart(options?: { clock?: Clock }): Promise<void>;
  close(): Promise<void>;
}

export function clientOptions(sim: GatewaySimulator, signType: SignType = 'HMAC-SHA256'): WechatPayClientOptions {
  return {
    merchant: { ...MERCHANT, signType },
    apiBase: sim.origin,
    backupBase: null,
    ca: sim.pki.ca.certPem,
    certificate: { kind: 'pem', certPem: sim.pki.client.certPem, keyPem: sim.pki.client.keyPem },
    timeouts: { micropay: 3000, orderquery: 3000, reverse: 3000, refund: 3000, refundquery: 3000, connect: 2000 },
  };
}

/** The real engine on a real journal file, against the simulator over real HTTPS. Time is virtual. */
export async function createWorld(options: WorldOptions = {}): Promise<World> {
  let clock = options.clock ?? new VirtualClock();
  const sim = options.simulator ?? (await GatewaySimulator.start({ ...MERCHANT, clock }));
  const dir = tempDir();
  const dbPath = options.dbPath ?? join(dir, 'scanbox.db');
  const log = memoryLogger('debug');
  const build = () => {
    const client = new WechatPayClient({ ...clientOptions(sim, options.signType), log, ...options.client });
    const journal = Journal.open(dbPath, { deviceId: DEVICE_ID, clock });
    const engine = new PaymentEngine({
      journal,
      gateway: client,
      clock,
      log,
      body: 'scanbox test',
      deviceId: DEVICE_ID,
      ...options.engine,
    });
    const refunds = new RefundEngine({ journal, gateway: client, clock, log, ...options.refunds });
    return { client, journal, engine, refunds };
  };
  let parts = build();
  const world: World = {
    get clock() {
      return clock;
    },
    sim,
    get client() {
      return parts.client;
    },
    get journal() {
      return parts.journal;
    },
    get engine() {
      return parts.engine;
    },
    get refunds() {
      return parts.refunds;
    },
    log,
    dir,
    dbPath,
    async restart(restartOptions = {}) {
      await parts.engine.stopReversalQueue();
      await parts.refunds.stopQueue();
      parts.journal.close();
      await parts.client.close();
      if (restartOptions.clock) clock = restartOptions.clock;
      parts = build();
    },
    async close() {
      await parts.engine.stopReversalQueue();
      await parts.refunds.stopQueue();
      parts.journal.close();
      await parts.client.close();
      if (!options.simulator) await sim.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return world;
}
