/**
 * Shared pieces of the fault matrix (test/faults/*.test.ts): a sale through the real engine, the register
 * line the box would send for a journal row, a rewriting proxy for answers the simulator cannot fake, and
 * the real daemon started into FAULT mode.
 */
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { finalLine } from '../../src/box.js';
import type { Sale } from '../../src/journal/journal.js';
import { verdictOf, type SaleProgress } from '../../src/payment/engine.js';
import type { GatewaySimulator, Scenario } from '../../src/simulator/gateway.js';
import type { Daemon, Rig } from '../../src/simulator/rig.js';
import { sign, type SignType } from '../../src/wechatpay/sign.js';
import { decodeXml, encodeXml } from '../../src/wechatpay/xml.js';
import { freshCode, MERCHANT, type World } from './world.js';

export const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'cli.js');

/** What the box tells the register about a sale: derived from its journal row only, as box.ts does. */
export function registerLine(sale: Sale): string {
  return finalLine(verdictOf(sale));
}

export interface Sold {
  sale: Sale;
  code: string;
  progress: SaleProgress[];
}

/** One sale through the real engine: PAY (journalled), the scan, and the whole payment cycle. */
export async function sell(
  w: World,
  scenario: Scenario | null,
  opts: { ref?: string; amount?: number; cancelAfter?: SaleProgress } = {},
): Promise<Sold> {
  const code = freshCode();
  // null: the simulator's default scenario (paid at once).
  if (scenario) w.sim.setScenario(code, scenario);
  const started = w.engine.startSale(opts.ref ?? `R${code.slice(-6)}`, opts.amount ?? 1234);
  if (started.kind !== 'open') throw new Error(`sale not opened: ${started.kind}`);
  const progress: SaleProgress[] = [];
  const cancel = new AbortController();
  const sale = await w.engine.pay(started.sale.id, code, {
    signal: cancel.signal,
    onProgress: (p) => {
      progress.push(p);
      if (p === opts.cancelAfter) cancel.abort();
    },
  });
  return { sale, code, progress };
}

/** The journal events of one kind, their details parsed. */
export function events(w: World, sale: Sale, kind: string): Record<string, unknown>[] {
  return w.journal
    .events(sale.id)
    .filter((e) => e.kind === kind)
    .map((e) => JSON.parse(e.detail) as Record<string, unknown>);
}

export function requestsFor(sim: GatewaySimulator, call: string, outTradeNo: string) {
  return sim.requests().filter((r) => r.call === call && r.outTradeNo === outTradeNo);
}

/** Ledger entries of one register REF (attach) that still hold the payer's money. */
export function chargedFor(sim: GatewaySimulator, ref: string) {
  return sim.ledger().filter((e) => e.attach === ref && e.charged);
}

/**
 * An HTTPS stand-in between the client and the simulator that rewrites chosen answers and signs them again
 * with the merchant key: a correctly signed answer that says something the simulator's faults cannot
 * (a wrong appid echo). Reverse is forwarded with the merchant certificate, as nginx would.
 */
export interface RewritingProxy {
  origin: string;
  rewritten: number;
  close(): Promise<void>;
}

export async function rewritingProxy(
  sim: GatewaySimulator,
  rewrite: (path: string, fields: Record<string, string>) => Record<string, string> | null,
): Promise<RewritingProxy> {
  const target = new URL(sim.origin);
  const state = { rewritten: 0 };
  const server = https.createServer({ key: sim.pki.server.keyPem, cert: sim.pki.server.certPem });
  server.on('request', (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const path = req.url ?? '/';
      // The answer is signed with the request's algorithm, as WeChat Pay does.
      const signType = (decodeXml(body.toString('utf8')).sign_type ?? 'MD5') as SignType;
      const upstream = https.request(
        {
          host: target.hostname,
          port: Number(target.port),
          path,
          method: 'POST',
          headers: { 'content-type': 'text/xml; charset=utf-8', 'content-length': body.length },
          ca: sim.pki.ca.certPem,
          cert: sim.pki.client.certPem,
          key: sim.pki.client.keyPem,
          agent: false,
        },
        (answer) => {
          const parts: Buffer[] = [];
          answer.on('data', (chunk: Buffer) => parts.push(chunk));
          answer.on('end', () => {
            let text = Buffer.concat(parts).toString('utf8');
            if (answer.statusCode === 200) {
              const fields = decodeXml(text);
              const changed = fields.return_code === 'SUCCESS' ? rewrite(path, { ...fields }) : null;
              if (changed) {
                delete changed.sign;
                text = encodeXml({ ...changed, sign: sign(changed, MERCHANT.apiKey, signType) });
                state.rewritten++;
              }
            }
            res.writeHead(answer.statusCode ?? 502, { 'content-type': answer.headers['content-type'] ?? 'text/xml' });
            res.end(text);
          });
        },
      );
      upstream.on('error', () => res.socket?.destroy());
      upstream.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `https://127.0.0.1:${port}`,
    get rewritten() {
      return state.rewritten;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * Starts `scanbox run` (Rig.spawnDaemon: as the unit starts it) and waits for FAULT mode instead of "ready for
 * sales", with both ports open. `wrap` runs it through another program (setpriv, to drop root).
 */
export async function startFaulted(rig: Rig, extraEnv: Record<string, string> = {}, wrap: string[] = []): Promise<Daemon> {
  const { daemon, ready } = rig.spawnDaemon({ env: extraEnv, wrap, readyLine: /box in FAULT mode/, timeoutMs: 20000 });
  await ready;
  return daemon;
}

/** A payment code for the daemon tests, unique in this process. */
let daemonSeq = 0;
export function daemonCode(): string {
  return `12${String(process.pid % 100000).padStart(5, '0')}7${String(++daemonSeq).padStart(10, '0')}`;
}
