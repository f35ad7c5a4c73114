import t from 'tap';
import { systemClock } from '../../src/clock.js';
import { Journal } from '../../src/journal/journal.js';
import { Rig } from '../../src/simulator/rig.js';
import { daemonCode } from '../helpers/faults.js';
import { waitUntilPolled } from '../helpers/ports.js';

/**
 * The fault matrix, part 3: the devices, on the real daemon. The scanner's cable is pulled while a sale
 * waits for its code (test/e2e/faults.test.ts has it too, with the register port; here it is checked
 * against the journal and the gateway's ledger as well).
 */

t.test('scanner unplugged during a sale -> the sale waits; once it is back the scan pays it: PAID, charged once', async (t) => {
  const rig = await Rig.start();
  t.teardown(() => rig.close());
  const daemon = await rig.startDaemon();
  const reg = rig.register;
  const from = reg.mark;
  reg.send('PAY 990 F-SCANNER');
  await reg.next('ACK F-SCANNER', 5000, from);

  // Unplugged while the daemon polls the port, not while a read of it is still running.
  await waitUntilPolled(daemon.process.pid!, rig.ports.path('scanner'));
  let mark = daemon.mark;
  await rig.ports.drop('scanner');
  t.match(await daemon.waitFor(/^<3>scanner port lost: re-opening until it is back/, 10000, mark), /path=/);
  const status = reg.mark;
  reg.send('STATUS');
  t.equal(await reg.next(/^STATUS /, 5000, status), 'STATUS BUSY F-SCANNER', 'the sale is still open');
  mark = daemon.mark;
  await rig.ports.restore('scanner');
  await daemon.waitFor(/^<6>scanner port back/, 15000, mark);

  rig.scanner.send(daemonCode());
  const paid = await reg.next(/^(PAID|FAILED) F-SCANNER /, 10000, from);
  t.match(paid, /^PAID F-SCANNER \S+ \d{28}$/);
  const [, , outTradeNo, transactionId] = paid.split(' ');
  t.same(
    reg.lines.slice(from).filter((l) => l.includes('F-SCANNER') && !l.startsWith('STATUS')),
    ['ACK F-SCANNER', 'WAIT F-SCANNER SCANNED', paid],
    'one answer, no second sale',
  );
  const journal = Journal.open(rig.dbPath, { deviceId: 'BENCH01', clock: systemClock, readonly: true });
  t.teardown(() => journal.close());
  t.match(journal.latestByRef('F-SCANNER'), { state: 'paid', outTradeNo, transactionId });
  t.equal(journal.byRef('F-SCANNER').length, 1, 'one attempt');
  t.match(rig.sim.entry(outTradeNo!), { charged: true, micropayCount: 1, totalFee: 990, transactionId });
  t.equal(rig.sim.ledger().filter((e) => e.attach === 'F-SCANNER' && e.charged).length, 1, 'charged once');
  t.equal(daemon.lines.filter((l) => /scanner port lost/.test(l)).length, 1, 'the loss is logged once');
});
