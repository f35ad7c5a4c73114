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

t.test('DNS failure of the primary domain -> micropay not re-sent to the backup; orderquery and reverse answered by the backup: FAILED REVERSED, nothing charged; then STATUS OFFLINE and the next PAY FAILED OFFLINE at once', async (t) => {
  const rig = await Rig.start();
  t.teardown(() => rig.close());
  // `.invalid` never resolves (RFC 6761); the port is the simulator's, so only the name is wrong.
  const primary = `https://scanbox-primary.invalid:${new URL(rig.sim.origin).port}`;
  const daemon = await rig.startDaemon({
    SCANBOX_API_BASE: primary,
    SCANBOX_API_BACKUP_BASE: rig.sim.origin,
    SCANBOX_USERPAYING_POLL_S: '1',
    SCANBOX_USERPAYING_TIMEOUT_S: '5',
  });
  const reg = rig.register;
  let from = reg.mark;
  reg.send('PAY 1500 F-DNS');
  await reg.next('ACK F-DNS', 5000, from);
  rig.scanner.send(daemonCode());
  const answer = await reg.next(/^(PAID|FAILED) F-DNS /, 25000, from);
  t.match(answer, /^FAILED F-DNS REVERSED \S/);
  t.same(reg.lines.slice(from).filter((l) => l.includes('F-DNS')), ['ACK F-DNS', 'WAIT F-DNS SCANNED', answer]);

  const journal = Journal.open(rig.dbPath, { deviceId: 'BENCH01', clock: systemClock, readonly: true });
  t.teardown(() => journal.close());
  const sale = journal.latestByRef('F-DNS')!;
  t.match(sale, { state: 'reversed', finalCode: 'REVERSED', transactionId: null });
  const detail = (kind: string) =>
    journal
      .events(sale.id)
      .filter((e) => e.kind === kind)
      .map((e) => JSON.parse(e.detail) as Record<string, unknown>);
  const [micropay] = detail('micropay_answer');
  // ENOTFOUND where the resolver answers at once; a resolver that hangs ends in the connect timeout.
  t.match(micropay, { result: 'unknown', failure: /^(NETWORK|TIMEOUT)$/ });
  t.notOk('origin' in micropay!, 'nobody answered micropay');
  const queries = detail('orderquery_answer');
  t.ok(queries.length >= 1);
  t.ok(queries.every((q) => q.origin === rig.sim.origin && q.err_code === 'ORDERNOTEXIST'), 'every orderquery answered by the backup');
  t.match(detail('reverse_answer'), [{ origin: rig.sim.origin, err_code: 'ORDERNOTEXIST' }], 'the reverse answered by the backup');

  const requests = rig.sim.requests();
  t.equal(requests.filter((r) => r.call === 'micropay').length, 0, 'micropay never went to the backup');
  t.equal(requests.filter((r) => r.call === 'orderquery' && r.outTradeNo === sale.outTradeNo).length, queries.length);
  t.equal(requests.filter((r) => r.call === 'reverse' && r.outTradeNo === sale.outTradeNo).length, 1);
  t.same(rig.sim.ledger(), [], 'nothing charged anywhere');

  // Payments cannot be sent while only the backup answers: the box says so instead of letting the next
  // customer scan and wait for the same end.
  from = reg.mark;
  reg.send('STATUS');
  t.equal(await reg.next(/^STATUS /, 5000, from), 'STATUS OFFLINE WeChat Pay unreachable (only the backup domain answers, and payments go to the primary)');
  t.ok(daemon.lines.some((l) => l === '<3>WeChat Pay unreachable: new sales are refused until it answers again failure=BACKUP_ONLY'));
  from = reg.mark;
  reg.send('PAY 500 F-DNS-2');
  await reg.next('ACK F-DNS-2', 5000, from);
  t.match(await reg.next(/^(PAID|FAILED) F-DNS-2 /, 2000, from), /^FAILED F-DNS-2 OFFLINE \S/);
  t.equal(rig.sim.requests().filter((r) => r.call === 'micropay').length, 0);
});
