import t from 'tap';
import { systemClock } from '../../src/clock.js';
import { Journal } from '../../src/journal/journal.js';
import { Rig } from '../../src/simulator/rig.js';

/**
 * Display sales under SIGKILL (the crash matrix's rule, contract §6.5 and §6.3, for a sale whose amount came from
 * the customer-display line): the real daemon is killed while a display sale talks to WeChat Pay, restarted on the
 * same journal, and recovery gives back whatever it cannot know was reported: the cashier was never told PAID.
 * The arming burst stays journalled with the sale.
 */

t.setTimeout(180_000);

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
let n = 0;
const code = (): string => `13${String(process.pid % 100000).padStart(5, '0')}5${String(++n).padStart(10, '0')}`;
const TOTAL_1250 = Buffer.from('0c1b73321b5141' + Buffer.from('12.50').toString('hex') + '0d', 'hex');
const total = (text: string): Buffer => Buffer.concat([Buffer.from('0c1b73321b5141', 'hex'), Buffer.from(text, 'latin1'), Buffer.from([0x0d])]);

async function arm(rig: Rig, bytes: Buffer, amount: string): Promise<void> {
  const daemon = rig.daemon!;
  const mark = daemon.mark;
  for (const byte of bytes) {
    rig.display.sendRaw(Buffer.from([byte]));
    await sleep(5);
  }
  await daemon.waitFor(new RegExp(`display total armed: waiting for the payment code amount=${amount.replace('.', '\\.')}`), 5000, mark);
}

function journalOf(rig: Rig): Journal {
  return Journal.open(rig.dbPath, { deviceId: 'BENCH01', clock: systemClock, readonly: true });
}

t.test('SIGKILL during display sales: recovery gives back what the cashier was not told, the burst stays journalled', async (t) => {
  const rig = await Rig.start({ display: {}, env: { SCANBOX_DISPLAY_MODE: 'charge', SCANBOX_USERPAYING_TIMEOUT_S: '60' } });
  t.teardown(() => rig.close());
  await rig.startDaemon();

  await t.test('killed while armed, before the scan: after the restart nothing is armed, the scan charges nothing', async (t) => {
    await arm(rig, TOTAL_1250, '12.50');
    await rig.killDaemon();
    const daemon = await rig.startDaemon();
    const mark = daemon.mark;
    rig.scanner.send(code());
    await daemon.waitFor(/scan ignored: no total armed/, 5000, mark);
    t.equal(rig.sim.ledger().length, 0);
  });

  const killedSales: { outTradeNo: string; what: string }[] = [];

  await t.test('killed while micropay hangs (charged at WeChat Pay, no answer)', async (t) => {
    const payment = code();
    rig.sim.setScenario(payment, { outcome: 'paid', faults: { micropay: [{ kind: 'hang' }] } });
    await arm(rig, total('33.00'), '33.00');
    const mark = rig.daemon!.mark;
    rig.scanner.send(payment);
    const opened = await rig.daemon!.waitFor(/display sale: the armed total is charged /, 5000, mark);
    const outTradeNo = opened.match(/out_trade_no=(\S+)/)![1]!;
    for (let i = 0; i < 200 && !rig.sim.ledger().some((e) => e.outTradeNo === outTradeNo && e.charged); i++) await sleep(25);
    t.ok(rig.sim.ledger().find((e) => e.outTradeNo === outTradeNo)?.charged, 'the payer was charged');
    await rig.killDaemon();
    killedSales.push({ outTradeNo, what: 'micropay hang' });
    await rig.startDaemon();
  });

  await t.test('killed in the password wait', async (t) => {
    const payment = code();
    rig.sim.setScenario(payment, { outcome: 'userpaying' });
    await arm(rig, total('8.80'), '8.80');
    const mark = rig.daemon!.mark;
    rig.scanner.send(payment);
    const opened = await rig.daemon!.waitFor(/display sale: the armed total is charged /, 5000, mark);
    const outTradeNo = opened.match(/out_trade_no=(\S+)/)![1]!;
    await rig.daemon!.waitFor(/USERPAYING|password/i, 10000, mark);
    await rig.killDaemon();
    killedSales.push({ outTradeNo, what: 'password wait' });
    await rig.startDaemon();
  });

  await t.test('after recovery: every killed sale reversed, nothing kept, the bursts journalled; the next display sale is paid', async (t) => {
    for (let i = 0; i < 1200; i++) {
      const left = killedSales.filter(({ outTradeNo }) => {
        const entry = rig.sim.ledger().find((e) => e.outTradeNo === outTradeNo);
        return !entry || entry.charged || !entry.reversed;
      });
      if (left.length === 0) break;
      await sleep(50);
    }
    const journal = journalOf(rig);
    try {
      for (const { outTradeNo, what } of killedSales) {
        const entry = rig.sim.ledger().find((e) => e.outTradeNo === outTradeNo)!;
        t.match(entry, { charged: false, reversed: true }, `${what}: given back at WeChat Pay`);
        const sale = journal.byOutTradeNo(outTradeNo)!;
        t.match(sale.ref, /^D\d{8}-\d{4}$/, `${what}: the box's own REF`);
        t.equal(sale.state, 'reversed', `${what}: reversed in the journal`);
        t.ok(journal.displayOrigin(sale.id)?.bytes.length, `${what}: the arming burst journalled`);
      }
    } finally {
      journal.close();
    }
    await arm(rig, total('4.00'), '4.00');
    const mark = rig.daemon!.mark;
    rig.scanner.send(code());
    const paid = await rig.daemon!.waitFor(/sale paid ref=D\d{8}-\d{4} /, 15000, mark);
    t.match(paid, /amount=4\.00/);
    const kept = rig.sim.ledger().filter((e) => e.charged);
    t.same(kept.map((e) => e.totalFee), [400], 'the only money kept is the sale the cashier saw paid');
  });
});
