import { BackendChain } from '../../../src/backend/chain.js';
import { BackendGateway } from '../../../src/backend/gateway.js';
import { createLogger } from '../../../src/log.js';
import type { ApiOutcome } from '../../../src/wechatpay/client.js';
import { WechatPayClient } from '../../../src/wechatpay/client.js';
import { sleep } from './common.js';

/**
 * The chain bench's load generator (chain.ts), a process of its own so that its CPU is counted apart from the
 * simulator's and the backends' (a chain's boxes are on other machines). The parent forks it and sends one
 * command at a time over IPC; each answer is one message back.
 *
 * Every simulated box makes one call at a time, as a box at a counter does: the box's keep-alive connection is
 * reused from call to call (the gateway's own agent), so no TLS handshake is made per call, as on a real box.
 */

type Caller = Pick<BackendGateway, 'micropay' | 'orderquery' | 'close'>;

export type LoadCommand =
  | { op: 'direct'; boxes: number; prefix: string; merchant: { mchId: string; appId: string; apiKey: string }; apiBase: string; caPem: string; certPem: string; keyPem: string }
  | { op: 'backend'; origins: string[]; certs: Array<{ deviceId: string; certPem: string; keyPem: string }>; caPem: string }
  | { op: 'open'; rate: number; seconds: number }
  | { op: 'closed'; seconds: number }
  | { op: 'kill'; origins: string[]; certs: Array<{ deviceId: string; certPem: string; keyPem: string }>; caPem: string; seconds: number; killAfterMs: number }
  | { op: 'killed' }
  | { op: 'close' };

export type LoadAnswer =
  | { op: 'ready'; boxes: number }
  | { op: 'open'; ms: number[]; failed: number }
  | { op: 'closed'; calls: number; seconds: number; failed: number }
  | { op: 'kill-now' }
  | { op: 'kill'; answered: Array<[string, boolean]>; unknown: number; retried: number; servedAgainMs: number[] }
  | { op: 'closed-down' }
  | { op: 'error'; message: string };

let codeSeq = 0;
const payCode = (): string => `13${String(process.pid % 100000).padStart(5, '0')}9${String(++codeSeq).padStart(10, '0')}`;

let callers: Caller[] = [];
let prefixes: string[] = [];
let paid: string[] = [];
let seq = 0;
let killedAt = Infinity;

/** Box `box`'s next call: a micropay of a fresh order or an orderquery of its paid one, in turn. */
function call(box: number, turn: number): Promise<ApiOutcome> {
  const c = callers[box]!;
  if (turn % 2 === 0) {
    return c.micropay({ outTradeNo: `${prefixes[box]}X${process.pid}N${++seq}`, totalFee: 100, authCode: payCode(), body: 'bench', deviceInfo: prefixes[box] });
  }
  return c.orderquery({ outTradeNo: paid[box]! });
}

async function replaceCallers(next: Caller[], names: string[]): Promise<void> {
  await Promise.all(callers.map((c) => c.close()));
  callers = next;
  prefixes = names;
  paid = [];
  for (let i = 0; i < callers.length; i++) {
    const otn = `${prefixes[i]}P${process.pid}S${++seq}`;
    const o = await callers[i]!.micropay({ outTradeNo: otn, totalFee: 100, authCode: payCode(), body: 'bench', deviceInfo: prefixes[i] });
    if (o.kind !== 'success') throw new Error(`the first sale of ${prefixes[i]} did not succeed: ${JSON.stringify(o)}`);
    paid.push(otn);
  }
}

/**
 * Open loop at `rate` calls/s: call i goes to box i mod boxes when it is due, whatever the others do. A box
 * whose previous call is still under way gets it anyway (a shop with two counters); latencies from the due time.
 */
async function openLoop(rate: number, seconds: number): Promise<LoadAnswer> {
  const ms: number[] = [];
  let failed = 0;
  const pending: Promise<void>[] = [];
  const start = performance.now();
  const total = Math.round(rate * seconds);
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    const box = i % callers.length;
    pending.push(
      call(box, Math.floor(i / callers.length)).then((o) => {
        ms.push(performance.now() - due);
        if (o.kind !== 'success') failed++;
      }),
    );
  }
  await Promise.all(pending);
  return { op: 'open', ms, failed };
}

/** Closed loop: every box makes its next call as soon as its last one is answered. */
async function closedLoop(seconds: number): Promise<LoadAnswer> {
  const start = performance.now();
  const end = start + seconds * 1000;
  let calls = 0;
  let failed = 0;
  await Promise.all(
    callers.map(async (_, box) => {
      for (let turn = 0; performance.now() < end; turn++) {
        const o = await call(box, turn);
        calls++;
        if (o.kind !== 'success') failed++;
      }
    }),
  );
  return { op: 'closed', calls, seconds: (performance.now() - start) / 1000, failed };
}

/** Boxes on BackendChain naming every backend (half of them in the other order); the parent kills one. */
async function killRun(cmd: Extract<LoadCommand, { op: 'kill' }>, send: (a: LoadAnswer) => void): Promise<LoadAnswer> {
  let retried = 0;
  const chains = cmd.certs.map(
    (c, i) =>
      new BackendChain({
        origins: i % 2 === 0 ? cmd.origins : [...cmd.origins].reverse(),
        certificate: c,
        caPem: cmd.caPem,
        log: createLogger({ level: 'info', write: (line) => void (/never left the box/.test(line) && retried++) }),
        timeouts: { micropay: 5000, orderquery: 5000, connect: 1000 },
      }),
  );
  const answered: Array<[string, boolean]> = [];
  let unknown = 0;
  killedAt = Infinity;
  const servedAgainMs: number[] = new Array(chains.length).fill(Infinity);
  const end = performance.now() + cmd.seconds * 1000;
  const timer = setTimeout(() => send({ op: 'kill-now' }), cmd.killAfterMs);
  await Promise.all(
    chains.map(async (chain, box) => {
      while (performance.now() < end) {
        const otn = `${cmd.certs[box]!.deviceId}K${process.pid}N${++seq}`;
        const o = await chain.micropay({ outTradeNo: otn, totalFee: 100, authCode: payCode(), body: 'bench', deviceInfo: cmd.certs[box]!.deviceId });
        const at = performance.now();
        if (o.kind === 'unknown') {
          unknown++;
          continue;
        }
        answered.push([otn, o.kind === 'success']);
        if (o.kind === 'success' && at > killedAt && servedAgainMs[box] === Infinity) servedAgainMs[box] = at - killedAt;
      }
    }),
  );
  clearTimeout(timer);
  await Promise.all(chains.map((c) => c.close()));
  return { op: 'kill', answered, unknown, retried, servedAgainMs: servedAgainMs.map((v) => (v === Infinity ? -1 : v)) };
}

async function handle(cmd: LoadCommand, send: (a: LoadAnswer) => void): Promise<LoadAnswer | null> {
  switch (cmd.op) {
    case 'direct': {
      // One merchant client per simulated box, as boxes in direct mode would each have theirs.
      const clients = Array.from(
        { length: cmd.boxes },
        () =>
          new WechatPayClient({
            merchant: { ...cmd.merchant, signType: 'HMAC-SHA256' },
            apiBase: cmd.apiBase,
            backupBase: null,
            ca: cmd.caPem,
            certificate: { kind: 'pem', certPem: cmd.certPem, keyPem: cmd.keyPem },
          }),
      );
      await replaceCallers(clients, clients.map((_, i) => `${cmd.prefix}${i}`));
      return { op: 'ready', boxes: callers.length };
    }
    case 'backend': {
      const gateways = cmd.certs.map((c, i) => new BackendGateway({ origin: cmd.origins[i % cmd.origins.length]!, certificate: c, caPem: cmd.caPem }));
      await replaceCallers(gateways, cmd.certs.map((c) => c.deviceId));
      return { op: 'ready', boxes: callers.length };
    }
    case 'open':
      return openLoop(cmd.rate, cmd.seconds);
    case 'closed':
      return closedLoop(cmd.seconds);
    case 'kill':
      return killRun(cmd, send);
    case 'killed':
      killedAt = performance.now();
      return null;
    case 'close':
      await Promise.all(callers.map((c) => c.close()));
      callers = [];
      return { op: 'closed-down' };
  }
}

if (process.send !== undefined) {
  const send = (a: LoadAnswer): void => void process.send!(a);
  process.on('message', (cmd: LoadCommand) => {
    handle(cmd, send).then(
      (a) => {
        if (a !== null) send(a);
      },
      (error: unknown) => send({ op: 'error', message: (error as Error).stack ?? String(error) }),
    );
  });
}
