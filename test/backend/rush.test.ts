import { performance } from 'node:perf_hooks';
import t from 'tap';
import type { Sale } from '../../src/journal/journal.js';
import { createBackendWorld, freshCode, type BackendWorld, type Box } from './helpers.js';

/**
 * A rush through the backend (contract §8): 20 boxes' micropays at once against a WeChat Pay that takes 2 s to
 * answer each. The backend sends several at once over its pool, counts WeChat Pay's time only, and a call it
 * could not send within 5 s of its arrival is answered as never sent: the box ends FAILED ... OFFLINE at once,
 * and WeChat Pay never sees it. Every sale ends right: what the register is told is what the ledger holds.
 * (The 2 s are the simulated gateway's latency, the subject of the test, not a wait for a condition.)
 */

const BOXES = 20;
const LATENCY_MS = 2000;

async function rush(world: BackendWorld): Promise<{ boxes: Box[]; sales: Sale[]; arrivals: Map<string, number>; t0: number; maxInFlight: number }> {
  const boxes: Box[] = [];
  for (let i = 0; i < BOXES; i++) {
    boxes.push(
      await world.box(`RUSH${String(i).padStart(2, '0')}X`, {
        // The box's own default waits (20 s for a micropay through a backend), not the helper's short ones.
        gateway: { timeouts: { micropay: 20_000, orderquery: 22_000, reverse: 26_000, connect: 2000 } },
      }),
    );
  }
  const arrivals = new Map<string, number>();
  let inFlight = 0;
  let maxInFlight = 0;
  const stop = world.sim.onRequest((call, outTradeNo) => {
    if (call !== 'micropay' || outTradeNo === null) return;
    arrivals.set(outTradeNo, performance.now());
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    setTimeout(() => inFlight--, LATENCY_MS);
  });
  const codes = boxes.map(() => freshCode());
  for (const code of codes) world.sim.setScenario(code, { outcome: 'paid', faults: { micropay: [{ kind: 'delay', ms: LATENCY_MS }] } });
  const t0 = performance.now();
  const sales = await Promise.all(
    boxes.map(async (box, i) => {
      const started = box.engine.startSale(`R${i}`, 100 + i);
      if (started.kind !== 'open') throw new Error('not open');
      return box.engine.pay(started.sale.id, codes[i]!);
    }),
  );
  stop();
  return { boxes, sales, arrivals, t0, maxInFlight };
}

/** Each forwarded micropay's wait at the backend, from its arrival to its sending (the log's queued_ms). */
function queuedMs(world: BackendWorld): number[] {
  return world.backendLog.lines
    .filter((l) => l.includes('backend: forwarded') && l.includes('call=micropay'))
    .map((l) => Number(/queued_ms=(\d+)/.exec(l)?.[1] ?? NaN));
}

function micropayFailure(box: Box, sale: Sale): string | undefined {
  const answer = box.journal.events(sale.id).find((e) => e.kind === 'micropay_answer');
  return /"failure":"([A-Z_]+)"/.exec(answer?.detail ?? '')?.[1];
}

t.test('a pool of 8: all 20 sent within 5 s, none timed out, every one paid once', async (t) => {
  const world = await createBackendWorld({ upstream: { connections: 8 } });
  t.teardown(() => world.close());
  const { boxes, sales, arrivals, t0, maxInFlight } = await rush(world);
  t.ok(maxInFlight <= 8, `bounded: at most 8 at WeChat Pay at once (${maxInFlight})`);
  t.ok(maxInFlight >= 4, `several at once (${maxInFlight})`);
  const queued = queuedMs(world);
  t.equal(queued.length, BOXES, 'every micropay forwarded');
  t.ok(queued.every((ms) => ms <= 5000), `none queued past 5 s at the backend (longest ${Math.max(...queued)} ms)`);
  t.ok(arrivals.size === BOXES && t0 > 0);
  for (const [i, sale] of sales.entries()) {
    t.equal(sale.state, 'paid', `${sale.outTradeNo}: ${sale.state} ${sale.finalCode ?? ''}`);
    t.not(micropayFailure(boxes[i]!, sale), 'TIMEOUT');
    const entry = world.sim.entry(sale.outTradeNo);
    t.ok(entry?.charged && entry.micropayCount === 1, 'charged once');
  }
});

t.test('a pool of 4: what could not leave within 5 s is never sent and ends FAILED OFFLINE; none reported TIMEOUT', async (t) => {
  const world = await createBackendWorld({ upstream: { connections: 4 } });
  t.teardown(() => world.close());
  const { boxes, sales, arrivals, t0, maxInFlight } = await rush(world);
  t.ok(maxInFlight <= 4, `bounded (${maxInFlight})`);
  const queued = queuedMs(world);
  t.ok(queued.length >= 1 && queued.every((ms) => ms <= 5000), `none sent after waiting past 5 s at the backend (longest ${Math.max(...queued)} ms)`);
  t.ok(t0 > 0);
  let paid = 0;
  let offline = 0;
  for (const [i, sale] of sales.entries()) {
    const entry = world.sim.entry(sale.outTradeNo);
    t.not(micropayFailure(boxes[i]!, sale), 'TIMEOUT', 'no TIMEOUT for a call that never left');
    if (sale.state === 'paid') {
      paid++;
      t.ok(entry?.charged, 'paid and charged');
    } else {
      offline++;
      t.equal(sale.finalCode, 'OFFLINE', `${sale.outTradeNo}: ${sale.state} ${sale.finalCode}`);
      t.equal(entry, undefined, 'WeChat Pay never saw it');
      t.notOk(arrivals.has(sale.outTradeNo));
      const events = boxes[i]!.journal.events(sale.id).map((e) => e.kind);
      t.notOk(events.includes('reverse_started'), 'nothing to reverse');
    }
  }
  t.equal(paid + offline, BOXES);
  t.ok(paid >= 8, `${paid} paid`);
  t.ok(offline >= 4, `${offline} ended OFFLINE at once`);
  const notSent = (await world.store.calls()).filter((c) => c.code === 'NOT_SENT');
  t.equal(notSent.length, offline, 'the backend journal says which it did not send');
  t.equal(world.server.gate.late, offline);
});
