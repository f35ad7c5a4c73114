import t from 'tap';
import { systemClock } from '../../src/clock.js';
import { Journal } from '../../src/journal/journal.js';
import { Rig } from '../../src/simulator/rig.js';
import type { Scenario } from '../../src/simulator/scenarios.js';

/**
 * The crash matrix for display sales (contract §6.3 and §6.5 for a sale whose amount came from the
 * customer-display line): the real daemon is SIGKILLed at each boundary of a display sale, found from its own
 * log lines (as test/tooling/soak.ts finds them for register sales), and restarted on the same journal. Then the
 * money rules are checked against the simulator's ledger: every sale final; money kept by WeChat Pay exactly for
 * the sales the journal holds paid; what the cashier was not shown paid is given back; the arming burst stays
 * journalled with every sale; the next display sale after recovery is paid.
 */

t.setTimeout(240_000);

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
let n = 0;
const code = (): string => `13${String(process.pid % 100000).padStart(5, '0')}5${String(++n).padStart(10, '0')}`;
const total = (text: string): Buffer => Buffer.concat([Buffer.from('0c1b73321b5141', 'hex'), Buffer.from(text, 'latin1'), Buffer.from([0x0d])]);

interface Point {
  name: string;
  scenario: Scenario;
  /** The daemon's log line the kill follows at once. */
  at: RegExp;
  /** Extra wait after the line (a gateway that has charged but not answered). */
  then?: (rig: Rig, outTradeNo: string) => Promise<void>;
}

const POINTS: Point[] = [
  { name: 'sale opened (row committed, micropay not yet sent)', scenario: { outcome: 'paid', faults: { micropay: [{ kind: 'delay', ms: 3000 }] } }, at: /<6>sale opened ref=D/ },
  { name: 'payment code scanned', scenario: { outcome: 'paid', faults: { micropay: [{ kind: 'delay', ms: 3000 }] } }, at: /payment code scanned, asking WeChat Pay/ },
  {
    name: 'micropay charged, no answer yet',
    scenario: { outcome: 'paid', faults: { micropay: [{ kind: 'hang' }] } },
    at: /payment code scanned, asking WeChat Pay/,
    then: async (rig, outTradeNo) => {
      for (let i = 0; i < 200 && !rig.sim.ledger().some((e) => e.outTradeNo === outTradeNo && e.charged); i++) await sleep(25);
    },
  },
  { name: 'micropay answered', scenario: { outcome: 'paid' }, at: /<6>micropay answered ref=D/ },
  { name: 'payer must confirm', scenario: { outcome: 'userpaying' }, at: /payer must confirm in WeChat/ },
  { name: 'sale paid (the cashier saw it)', scenario: { outcome: 'paid' }, at: /<6>sale paid ref=D/ },
];

function journalOf(rig: Rig): Journal {
  return Journal.open(rig.dbPath, { deviceId: 'BENCH01', clock: systemClock, readonly: true });
}

async function arm(rig: Rig, amount: string): Promise<void> {
  const daemon = rig.daemon!;
  const mark = daemon.mark;
  for (const byte of total(amount)) {
    rig.display.sendRaw(Buffer.from([byte]));
    await sleep(5);
  }
  await daemon.waitFor(new RegExp(`display total armed: waiting for the payment code amount=${amount.replace('.', '\\.')}`), 5000, mark);
}

t.test('SIGKILL at every boundary of a display sale', async (t) => {
  const rig = await Rig.start({ display: {}, env: { SCANBOX_DISPLAY_MODE: 'charge', SCANBOX_USERPAYING_TIMEOUT_S: '60' } });
  t.teardown(() => rig.close());
  await rig.startDaemon();

  await t.test('armed, before the scan: after the restart nothing is armed and a scan charges nothing', async (t) => {
    await arm(rig, '12.50');
    await rig.killDaemon();
    const daemon = await rig.startDaemon();
    const mark = daemon.mark;
    rig.scanner.send(code());
    await daemon.waitFor(/scan ignored: no total armed/, 5000, mark);
    t.equal(rig.sim.ledger().length, 0);
  });

  const killed: { point: string; outTradeNo: string; told: boolean; amount: string }[] = [];
  for (const [i, point] of POINTS.entries()) {
    await t.test(`killed at: ${point.name}`, async (t) => {
      const payment = code();
      rig.sim.setScenario(payment, point.scenario);
      const amount = `${10 + i}.${String(i * 7).padStart(2, '0')}`;
      await arm(rig, amount);
      const daemon = rig.daemon!;
      const mark = daemon.mark;
      rig.scanner.send(payment);
      const opened = await daemon.waitFor(/display sale: the armed total is charged /, 5000, mark);
      const outTradeNo = opened.match(/out_trade_no=(\S+)/)![1]!;
      await daemon.waitFor(point.at, 15000, mark);
      await point.then?.(rig, outTradeNo);
      await rig.killDaemon();
      const told = daemon.lines.slice(mark).some((l) => l.startsWith(`<6>sale paid ref=`) && l.includes(outTradeNo));
      killed.push({ point: point.name, outTradeNo, told, amount });
      t.pass(`killed after ${point.at}`);
      await rig.startDaemon();
    });
  }

  await t.test('after recovery: the money rules hold for every killed sale', async (t) => {
    const settled = (): boolean => {
      const journal = journalOf(rig);
      try {
        return killed.every(({ outTradeNo }) => ['paid', 'failed', 'reversed'].includes(journal.byOutTradeNo(outTradeNo)?.state ?? ''));
      } finally {
        journal.close();
      }
    };
    for (let i = 0; i < 1200 && !settled(); i++) await sleep(100);
    const journal = journalOf(rig);
    try {
      for (const { point, outTradeNo, told, amount } of killed) {
        const sale = journal.byOutTradeNo(outTradeNo)!;
        const entry = rig.sim.ledger().find((e) => e.outTradeNo === outTradeNo);
        t.match(sale.ref, /^D\d{8}-\d{4}$/, `${point}: the box's own REF`);
        t.ok(['paid', 'failed', 'reversed'].includes(sale.state), `${point}: final (${sale.state})`);
        t.equal(entry?.charged ?? false, sale.state === 'paid', `${point}: WeChat Pay keeps money exactly when the journal says paid`);
        if (told) t.equal(sale.state, 'paid', `${point}: shown paid, stays paid`);
        t.equal(journal.displayOrigin(sale.id)?.bytes.toString('hex'), total(amount).toString('hex'), `${point}: the arming burst journalled byte for byte`);
      }
      const paidInJournal = killed.filter(({ outTradeNo }) => journal.byOutTradeNo(outTradeNo)!.state === 'paid').length;
      t.equal(rig.sim.ledger().filter((e) => e.charged).length, paidInJournal, 'no money kept that the journal does not hold paid');
    } finally {
      journal.close();
    }
    await arm(rig, '4.00');
    const mark = rig.daemon!.mark;
    rig.scanner.send(code());
    const paid = await rig.daemon!.waitFor(/sale paid ref=D\d{8}-\d{4} /, 15000, mark);
    t.match(paid, /amount=4\.00/, 'the next display sale after recovery is paid');
    t.comment(killed.map((k) => `${k.point}: ${k.told ? 'told paid' : 'not told'}`).join('\n'));
  });
});
