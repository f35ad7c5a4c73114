import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { VirtualClock } from '../../src/clock.js';
import { BackendGateway, type BackendGatewayOptions } from '../../src/backend/gateway.js';
import { enrolBox } from '../../src/backend/enrol.js';
import { BackendPki, type BoxCertificate } from '../../src/backend/pki.js';
import { BackendServer, type BackendPolicy } from '../../src/backend/server.js';
import { openBackend } from '../helpers/backend-rig.js';
import { SqliteBackendStore, type BoxPolicy } from '../../src/backend/store.js';
import { Journal } from '../../src/journal/journal.js';
import { memoryLogger } from '../../src/log.js';
import { PaymentEngine, type EngineOptions } from '../../src/payment/engine.js';
import { RefundEngine } from '../../src/payment/refund.js';
import { GatewaySimulator } from '../../src/simulator/gateway.js';
import { WechatPayClient, type WechatPayClientOptions } from '../../src/wechatpay/client.js';
import { DEVICE_ID, MERCHANT, clientOptions, tempDir } from '../helpers/world.js';

export { DEVICE_ID, MERCHANT, freshCode } from '../helpers/world.js';

export { POLICY } from '../helpers/backend-rig.js';

export interface Box {
  deviceId: string;
  certificate: BoxCertificate;
  gateway: BackendGateway;
  journal: Journal;
  engine: PaymentEngine;
  refunds: RefundEngine;
  log: ReturnType<typeof memoryLogger>;
  dbPath: string;
}

export interface BackendWorld {
  clock: VirtualClock;
  sim: GatewaySimulator;
  dir: string;
  backendDir: string;
  store: SqliteBackendStore;
  pki: BackendPki;
  server: BackendServer;
  upstream: WechatPayClient;
  /** The backend's log lines. */
  backendLog: ReturnType<typeof memoryLogger>;
  /** Enrols the box and builds its journal, engine and BackendGateway. */
  box(deviceId?: string, options?: { policy?: Partial<BoxPolicy>; gateway?: Partial<BackendGatewayOptions>; engine?: Partial<EngineOptions> }): Promise<Box>;
  gatewayFor(certificate: { certPem: string; keyPem: string }, options?: Partial<BackendGatewayOptions>): BackendGateway;
  close(): Promise<void>;
}

export async function createBackendWorld(
  options: {
    policy?: Partial<BackendPolicy>;
    client?: Partial<WechatPayClientOptions>;
    now?: () => number;
    /** The pool to WeChat Pay (the client's payConnections and the server's gate) and the send deadline. */
    upstream?: { connections?: number; sendWithinMs?: number };
    sim?: Partial<Parameters<typeof GatewaySimulator.start>[0]>;
    connections?: { handshakeMs?: number; total?: number; perAddress?: number };
  } = {},
): Promise<BackendWorld> {
  const clock = new VirtualClock();
  const sim = await GatewaySimulator.start({ ...MERCHANT, clock, ...options.sim });
  const dir = tempDir('scanbox-backend-');
  const backendDir = join(dir, 'backend');
  const backendLog = memoryLogger('debug');
  const upstream = new WechatPayClient({
    ...clientOptions(sim),
    log: backendLog,
    ...(options.upstream?.connections ? { payConnections: options.upstream.connections } : {}),
    ...options.client,
  });
  const { store, pki, server } = await openBackend(backendDir, upstream, backendLog, {
    recheckMs: 0,
    ...(options.policy ? { policy: options.policy } : {}),
    ...(options.now ? { now: options.now } : {}),
    ...(options.upstream ? { upstream: options.upstream } : {}),
    ...(options.connections ? { connections: options.connections } : {}),
  });
  const boxes: Box[] = [];
  const gateways: BackendGateway[] = [];
  const gatewayFor = (certificate: { certPem: string; keyPem: string }, extra: Partial<BackendGatewayOptions> = {}): BackendGateway => {
    const gateway = new BackendGateway({
      origin: server.origin,
      certificate,
      caPem: pki.caPem,
      timeouts: { micropay: 5000, orderquery: 5000, reverse: 5000, refund: 5000, refundquery: 5000, connect: 2000 },
      ...extra,
    });
    gateways.push(gateway);
    return gateway;
  };
  const world: BackendWorld = {
    clock,
    sim,
    dir,
    backendDir,
    store,
    pki,
    server,
    upstream,
    backendLog,
    gatewayFor,
    async box(deviceId = DEVICE_ID, boxOptions = {}) {
      const { certificate } = await enrolBox(pki, store, deviceId, { policy: boxOptions.policy ?? {} });
      const log = memoryLogger('debug');
      const gateway = gatewayFor(certificate, { log, ...boxOptions.gateway });
      const dbPath = join(dir, `${deviceId}.db`);
      const journal = Journal.open(dbPath, { deviceId, clock });
      const engine = new PaymentEngine({ journal, gateway, clock, log, body: 'scanbox test', deviceId, ...boxOptions.engine });
      const refunds = new RefundEngine({ journal, gateway, clock, log });
      const box: Box = { deviceId, certificate, gateway, journal, engine, refunds, log, dbPath };
      boxes.push(box);
      return box;
    },
    async close() {
      for (const box of boxes) {
        await box.engine.stopReversalQueue();
        await box.refunds.stopQueue();
        box.journal.close();
      }
      for (const gateway of gateways) await gateway.close();
      await server.close();
      await upstream.close();
      await store.close();
      await sim.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return world;
}
