import t from 'tap';
import { systemClock } from '../../src/clock.js';
import { Journal } from '../../src/journal/journal.js';
import { Rig } from '../../src/simulator/rig.js';
import { daemonCode } from '../helpers/faults.js';

/**
 * The fault matrix, part 4: the primary API domain cannot be resolved while the backup domain answers, on
 * the real daemon (the box's offline detection is part of the outcome). orderquery and reverse fail over
 * to the backup; micropay never does, because a second micropay anywhere could charge twice.
 */

t.test('DNS failure of the primary domain: the micropay provably never left, FAILED OFFLINE at once with nothing to query or reverse; two such sales make the box OFFLINE', async (t) => {
  const rig = await Rig.start();
  t.teardown(() => rig.close());
  // `.invalid` never resolves (RFC 6761); the port is the simulator's, so only the name is wrong.
  const primary = `https://scanbox-primary.invalid:${new URL(rig.sim.origin).port}`;
  await rig.startDaemon({ SCANBOX_API_BASE: primary, SCANBOX_API_BACKUP_BASE: rig.sim.origin });
  const reg = rig.register;
  let from = reg.mark;
  reg.send('PAY 1500 F-DNS');
  await reg.next('ACK F-DNS', 5000, from);
  const scanned = performance.now();
  rig.scanner.send(daemonCode());
  const answer = await reg.next(/^(PAID|FAILED) F-DNS /, 25000, from);
  const seconds = (performance.now() - scanned) / 1000;
  // ENOTFOUND where the resolver answers at once; a resolver that hangs ends in the 5 s connect timeout.
  t.match(answer, /^FAILED F-DNS OFFLINE \S.*\((NETWORK|TIMEOUT)\)$/);
  t.ok(seconds < 6, `answered in ${seconds.toFixed(2)} s, not after the unknown-result loop`);
  t.same(reg.lines.slice(from).filter((l) => l.includes('F-DNS')), ['ACK F-DNS', 'WAIT F-DNS SCANNED', answer]);

  const journal = Journal.open(rig.dbPath, { deviceId: 'BENCH01', clock: systemClock, readonly: true });
  t.teardown(() => journal.close());
  const sale = journal.latestByRef('F-DNS')!;
  t.match(sale, { state: 'failed', finalCode: 'OFFLINE', transactionId: null, reverseReason: null });
  const kinds = journal.events(sale.id).map((e) => e.kind);
  t.same(kinds, ['created', 'micropay_sent', 'micropay_answer'], 'no orderquery, no reverse');
  const micropay = JSON.parse(journal.events(sale.id).at(-1)!.detail) as Record<string, unknown>;
  t.match(micropay, { result: 'unknown', failure: /^(NETWORK|TIMEOUT)$/, unsent: /never left the box/ }, 'the evidence is journalled');
  t.match(String(micropay.message), /ENOTFOUND|EAI_AGAIN|connect in time/);
  t.same(journal.pendingReversals(), [], 'nothing queued for reversal');
  t.same(rig.sim.requests(), [], 'nothing reached WeChat Pay, nor the backup');
  t.same(rig.sim.ledger(), []);

  // A second one: WeChat Pay is unreachable, and the box says so before the next customer scans.
  from = reg.mark;
  reg.send('PAY 500 F-DNS-2');
  await reg.next('ACK F-DNS-2', 5000, from);
  rig.scanner.send(daemonCode());
  t.match(await reg.next(/^(PAID|FAILED) F-DNS-2 /, 15000, from), /^FAILED F-DNS-2 OFFLINE /);
  from = reg.mark;
  reg.send('STATUS');
  t.match(await reg.next(/^STATUS /, 5000, from), /^STATUS OFFLINE WeChat Pay unreachable \((NETWORK|TIMEOUT)\)$/);
  from = reg.mark;
  reg.send('PAY 700 F-DNS-3');
  await reg.next('ACK F-DNS-3', 5000, from);
  t.match(await reg.next(/^(PAID|FAILED) F-DNS-3 /, 2000, from), /^FAILED F-DNS-3 OFFLINE \S/, 'refused before any scan');
});

t.test('a sale cut off mid-payment, then the primary domain fails: recovery asks orderquery and reverse of the backup; micropay never goes there', async (t) => {
  const rig = await Rig.start();
  t.teardown(() => rig.close());
  await rig.startDaemon();
  const reg = rig.register;
  const from = reg.mark;
  reg.send('PAY 1500 F-BAK');
  await reg.next('ACK F-BAK', 5000, from);
  const code = daemonCode();
  // The payer never confirms: the order is open at WeChat Pay when the box dies.
  rig.sim.setScenario(code, { outcome: 'userpaying' });
  rig.scanner.send(code);
  await reg.next('WAIT F-BAK PASSWORD', 10000, from);
  await rig.killDaemon();

  const primary = `https://scanbox-primary.invalid:${new URL(rig.sim.origin).port}`;
  const daemon = await rig.startDaemon({ SCANBOX_API_BASE: primary, SCANBOX_API_BACKUP_BASE: rig.sim.origin });
  const q = reg.mark;
  reg.send('QUERY F-BAK');
  t.match(await reg.next(/^(PAID|FAILED|PENDING) F-BAK/, 30000, q), /^FAILED F-BAK INTERRUPTED /);

  const journal = Journal.open(rig.dbPath, { deviceId: 'BENCH01', clock: systemClock, readonly: true });
  t.teardown(() => journal.close());
  const sale = journal.latestByRef('F-BAK')!;
  t.match(sale, { state: 'reversed', finalCode: 'INTERRUPTED' });
  const detail = (kind: string) =>
    journal
      .events(sale.id)
      .filter((e) => e.kind === kind)
      .map((e) => JSON.parse(e.detail) as Record<string, unknown>);
  t.ok(detail('orderquery_answer').some((q) => q.origin === rig.sim.origin), 'recovery\'s orderquery answered by the backup');
  t.match(detail('reverse_answer').at(-1), { origin: rig.sim.origin, result: 'success' }, 'the reverse answered by the backup');
  const requests = rig.sim.requests();
  t.equal(requests.filter((r) => r.call === 'micropay').length, 1, 'the one micropay, to the primary before the cut');
  t.same(rig.sim.ledger().filter((e) => e.charged), [], 'nothing charged');
  t.ok(daemon.lines.some((l) => l.startsWith('<6>reversed at WeChat Pay')));
});
