/**
 * A box's payment engine in its own process, so a test can SIGKILL it at any step of a sale and start it
 * again on the same journal. It speaks one JSON object per line on stdout.
 *
 * argv[2] is a JSON ChildSpec. Mode `sale` recovers first (as the daemon does at start) and then runs one
 * sale; mode `recover` only recovers and drains pending reversals.
 */
import { systemClock } from '../../src/clock.js';
import { Journal } from '../../src/journal/journal.js';
import { createLogger } from '../../src/log.js';
import { PaymentEngine, type PaymentGateway } from '../../src/payment/engine.js';
import { WechatPayClient } from '../../src/wechatpay/client.js';

export interface ChildSpec {
  mode: 'sale' | 'recover';
  dbPath: string;
  deviceId: string;
  origin: string;
  caPem: string;
  certPem: string;
  keyPem: string;
  merchant: { mchId: string; appId: string; apiKey: string };
  sale?: { ref: string; amountFen: number; code: string };
  /** Halt (and wait to be killed) right after `paying` is committed, before micropay leaves. */
  haltBeforeMicropay?: boolean;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as ChildSpec;
const say = (event: Record<string, unknown>): void => void process.stdout.write(JSON.stringify(event) + '\n');

const client = new WechatPayClient({
  merchant: { ...spec.merchant, signType: 'HMAC-SHA256' },
  apiBase: spec.origin,
  backupBase: null,
  ca: spec.caPem,
  certificate: { kind: 'pem', certPem: spec.certPem, keyPem: spec.keyPem },
  timeouts: { micropay: 2000, orderquery: 2000, reverse: 2000, connect: 1000 },
});

const gateway: PaymentGateway = {
  async micropay(req) {
    say({ at: 'micropay_about_to_send' });
    if (spec.haltBeforeMicropay) await new Promise(() => undefined);
    return client.micropay(req);
  },
  orderquery: (req) => client.orderquery(req),
  reverse: (req) => client.reverse(req),
};

const journal = Journal.open(spec.dbPath, { deviceId: spec.deviceId, clock: systemClock });
const engine = new PaymentEngine({
  journal,
  gateway,
  clock: systemClock,
  log: createLogger({ level: 'warning', write: (line) => process.stderr.write(line + '\n') }),
  body: 'crash test',
  deviceId: spec.deviceId,
  pollMs: 200,
  userpayingTimeoutMs: 1000,
  minReverseDelayMs: 300,
  foregroundReverseAttempts: 3,
  reverseBackoffMs: [100, 200, 400],
});

async function main(): Promise<void> {
  const recovered = await engine.recover();
  say({ at: 'recovered', count: recovered.length });
  if (spec.mode === 'sale' && spec.sale) {
    const started = engine.startSale(spec.sale.ref, spec.sale.amountFen);
    say({ at: 'started', kind: started.kind, outTradeNo: started.sale.outTradeNo });
    if (started.kind === 'open') {
      const sale = await engine.pay(started.sale.id, spec.sale.code, {
        onProgress: (progress) => say({ at: progress }),
      });
      say({ at: 'final', state: sale.state, code: sale.finalCode });
    }
  }
  for (let round = 0; round < 50 && journal.pendingReversals().length > 0; round++) {
    await systemClock.sleep(100);
    await engine.runDueReversals();
  }
  say({ at: 'done', pending: journal.pendingReversals().length });
  journal.close();
  await client.close();
}

main().catch((error: unknown) => {
  say({ at: 'error', message: (error as Error).message });
  process.exitCode = 1;
});
