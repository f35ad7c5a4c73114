import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { systemClock } from '../../src/clock.js';
import { Journal } from '../../src/journal/journal.js';
import { isFinal } from '../../src/journal/states.js';
import { GatewaySimulator, type Scenario, type SimCall } from '../../src/simulator/gateway.js';
import type { ChildSpec } from '../helpers/engine-child.js';
import { DEVICE_ID, MERCHANT, freshCode, tempDir } from '../helpers/world.js';

/**
 * The engine's process is killed with SIGKILL at each step of a sale, restarted on the same journal, and
 * the outcome is checked against the money rules (contract §6): nothing charged is left unreported and
 * unreversed, nothing is charged twice, every sale is final after recovery, the journal is intact.
 */

const childScript = join(fileURLToPath(new URL('.', import.meta.url)), '..', 'helpers', 'engine-child.ts');
// Children run the TypeScript source through the same loader tap gives this process.
const loaderArgs = process.execArgv.filter((arg) => arg.includes('@tapjs/typescript'));

interface Child {
  process: ChildProcess;
  events: Record<string, unknown>[];
  waitFor(at: string): Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
}

function startChild(spec: ChildSpec): Child {
  const child = spawn(process.execPath, [...loaderArgs, childScript, JSON.stringify(spec)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  const events: Record<string, unknown>[] = [];
  const waiters: { at: string; resolve: (e: Record<string, unknown>) => void }[] = [];
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let event: Record<string, unknown>;
    try {
      event = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    events.push(event);
    for (const waiter of waiters.filter((w) => w.at === event.at)) waiter.resolve(event);
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    process: child,
    events,
    exited,
    waitFor(at) {
      const seen = events.find((e) => e.at === at);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        waiters.push({ at, resolve });
        void exited.then(() => setImmediate(() => reject(new Error(`child exited before ${at}: ${stderr.slice(-2000)}`))));
      });
    },
  };
}

function waitForRequest(sim: GatewaySimulator, call: SimCall, outTradeNo: () => string | null): Promise<void> {
  return new Promise((resolve) => {
    const off = sim.onRequest((seen, no) => {
      if (seen === call && (outTradeNo() === null || no === outTradeNo())) {
        off();
        resolve();
      }
    });
  });
}

async function killNow(child: Child): Promise<void> {
  child.process.kill('SIGKILL');
  await child.exited;
}

interface Kill {
  name: string;
  scenario: Scenario;
  /** How to reach the instant of the kill. */
  killAt: (sim: GatewaySimulator, child: Child) => Promise<void>;
  haltBeforeMicropay?: boolean;
  /** What recovery must leave: the sale's final state and code, and whether money went back. */
  expect: { state: string; code: string | null; refunded: boolean };
}

const pause = (ms: number) => systemClock.sleep(ms);

const KILLS: Kill[] = [
  {
    name: 'before micropay leaves (paying committed)',
    expect: { state: 'reversed', code: 'INTERRUPTED', refunded: false },
    scenario: { outcome: 'paid' },
    haltBeforeMicropay: true,
    killAt: async (_sim, child) => void (await child.waitFor('micropay_about_to_send')),
  },
  {
    name: 'micropay in flight, gateway charged, answer delayed',
    expect: { state: 'reversed', code: 'INTERRUPTED', refunded: true },
    scenario: { outcome: 'paid', faults: { micropay: [{ kind: 'delay', ms: 150 }] } },
    killAt: async (sim) => waitForRequest(sim, 'micropay', () => null),
  },
  {
    name: 'micropay in flight, gateway has charged',
    expect: { state: 'reversed', code: 'INTERRUPTED', refunded: true },
    scenario: { outcome: 'paid', faults: { micropay: [{ kind: 'hang' }] } },
    killAt: async (sim) => {
      await waitForRequest(sim, 'micropay', () => null);
      await pause(100);
    },
  },
  {
    name: 'polling while the payer types the password (payer confirms later)',
    expect: { state: 'reversed', code: 'INTERRUPTED', refunded: true },
    scenario: { outcome: 'userpaying', confirmAfterMs: 400 },
    killAt: async (sim) => waitForRequest(sim, 'orderquery', () => null),
  },
  {
    name: 'polling, the payer never confirms',
    expect: { state: 'reversed', code: 'INTERRUPTED', refunded: false },
    scenario: { outcome: 'userpaying' },
    killAt: async (sim) => waitForRequest(sim, 'orderquery', () => null),
  },
  {
    name: 'reversing, the gateway reversed, its answer delayed',
    expect: { state: 'reversed', code: 'TIMEOUT_REVERSED', refunded: false },
    scenario: { outcome: 'userpaying', faults: { reverse: [{ kind: 'delay', ms: 5000 }] } },
    killAt: async (sim) => waitForRequest(sim, 'reverse', () => null),
  },
  {
    name: 'reversing, the gateway reversed but the answer never came',
    expect: { state: 'reversed', code: 'TIMEOUT_REVERSED', refunded: false },
    scenario: { outcome: 'userpaying', faults: { reverse: [{ kind: 'hang' }] } },
    killAt: async (sim) => {
      await waitForRequest(sim, 'reverse', () => null);
      await pause(100);
    },
  },
  {
    name: 'between PAID committed and the end of the process',
    expect: { state: 'paid', code: null, refunded: false },
    scenario: { outcome: 'paid' },
    killAt: async (_sim, child) => void (await child.waitFor('final')),
  },
];

t.test('SIGKILL at each step of a sale, restart on the same journal: money rules hold', async (t) => {
  const sim = await GatewaySimulator.start({ ...MERCHANT });
  t.teardown(() => sim.close());
  const dir = tempDir('scanbox-crash-');
  const dbPath = join(dir, 'scanbox.db');
  const base: Omit<ChildSpec, 'mode'> = {
    dbPath,
    deviceId: DEVICE_ID,
    origin: sim.origin,
    caPem: sim.pki.ca.certPem,
    certPem: sim.pki.client.certPem,
    keyPem: sim.pki.client.keyPem,
    merchant: MERCHANT,
  };

  for (const [index, kill] of KILLS.entries()) {
    await t.test(kill.name, async (t) => {
      const ref = `CRASH-${index}`;
      const code = freshCode();
      sim.setScenario(code, kill.scenario);
      const child = startChild({
        ...base,
        mode: 'sale',
        sale: { ref, amountFen: 1000 + index, code },
        haltBeforeMicropay: kill.haltBeforeMicropay === true,
      });
      await child.waitFor('recovered');
      await kill.killAt(sim, child);
      await killNow(child);

      const restart = startChild({ ...base, mode: 'recover' });
      await restart.waitFor('done');
      t.equal(await restart.exited, 0, 'recovery exits cleanly');

      const journal = Journal.open(dbPath, { deviceId: DEVICE_ID, clock: systemClock, readonly: true });
      t.teardown(() => journal.close());
      t.equal(journal.quickCheck(), 'ok');
      const sale = journal.latestByRef(ref);
      t.ok(sale, 'the sale was journalled before anything left the box');
      t.ok(isFinal(sale!.state), `final after recovery (${sale!.state} ${sale!.finalCode})`);
      t.same(journal.unfinished(), [], 'nothing left unfinished');

      t.equal(sale!.state, kill.expect.state, 'final state');
      t.equal(sale!.finalCode, kill.expect.code, 'code the register gets on QUERY');
      const entry = sim.entry(sale!.outTradeNo);
      t.equal((entry?.refundedFen ?? 0) > 0, kill.expect.refunded, 'money given back exactly when it had been taken');
      if (sale!.state === 'paid') {
        t.equal(entry?.charged, true, 'PAID in the journal means charged at the gateway');
      } else {
        t.not(entry?.charged, true, 'not reported PAID means not charged (reversed if it was)');
        t.equal(sale!.finalCode === 'INTERRUPTED' || sale!.state === 'failed' || sale!.state === 'reversed', true);
      }
      const charges = sim.ledger().filter((e) => e.attach === ref && e.charged);
      t.ok(charges.length <= 1, 'never two charges for one REF');
    });
  }

  // Across every kill: the journal and the ledger agree sale by sale.
  const journal = Journal.open(dbPath, { deviceId: DEVICE_ID, clock: systemClock, readonly: true });
  t.teardown(() => journal.close());
  for (const entry of sim.ledger()) {
    const sale = journal.byOutTradeNo(entry.outTradeNo);
    t.ok(sale, `ledger order ${entry.outTradeNo} is in the journal`);
    if (entry.charged) t.equal(sale?.state, 'paid', `${entry.outTradeNo}: charged => reported PAID`);
  }
});
