import t from 'tap';
import Database from 'better-sqlite3';
import { Rig } from '../../src/simulator/rig.js';

/**
 * SIGKILL of the real daemon (a power cut) at each step of a refund (contract §6.6): before the request
 * leaves, in flight, after WeChat Pay accepted it, while it is being followed. After the restart there is
 * exactly one refund per RID at the simulator, under one out_refund_no, never more than the sale, and the
 * register hears one final line for the RID, the same one again for the same REFUND.
 */

let n = 0;
const code = (): string => `13${String(process.pid % 100000).padStart(5, '0')}9${String(++n).padStart(10, '0')}`;

interface Point {
  name: string;
  /** Arms the kill for the RID; resolves once the daemon is dead. */
  arm(rig: Rig, rid: string): Promise<void>;
  /** The refund scenario of the sale's order. */
  scenario?: Parameters<Rig['sim']['setRefundScenario']>[1];
}

const onLog = async (rig: Rig, match: RegExp): Promise<void> => {
  const daemon = rig.daemon!;
  await daemon.waitFor(match, 20000, daemon.mark);
  daemon.process.kill('SIGKILL');
};

const onRequest = (rig: Rig, call: 'refund' | 'refundquery'): Promise<void> =>
  new Promise((resolve) => {
    const off = rig.sim.onRequest((seen) => {
      if (seen !== call) return;
      off();
      // Synchronously, before the simulator acts: the request is in flight when the box dies.
      rig.daemon!.process.kill('SIGKILL');
      resolve();
    });
  });

const POINTS: Point[] = [
  { name: 'refund recorded (before the request leaves)', arm: (rig, rid) => onLog(rig, new RegExp(`refund recorded rid=${rid} `)) },
  { name: 'refund in flight', arm: (rig) => onRequest(rig, 'refund') },
  { name: 'refund accepted', arm: (rig, rid) => onLog(rig, new RegExp(`refund accepted by WeChat Pay rid=${rid} `)) },
  {
    name: 'while following (refundquery in flight)',
    scenario: { outcome: 'PROCESSING' },
    arm: (rig) => onRequest(rig, 'refundquery'),
  },
];

t.test('SIGKILL at each step of a refund', async (t) => {
  const rig = await Rig.start({ env: { SCANBOX_REFUNDS: 'register' } });
  t.teardown(() => rig.close());
  await rig.startDaemon();
  const reg = rig.register;
  const results: string[] = [];

  for (const [i, point] of POINTS.entries()) {
    await t.test(point.name, async (t) => {
      const ref = `KR-${i}`;
      const rid = `KRID-${i}`;
      let from = reg.mark;
      reg.send(`PAY 2000 ${ref}`);
      await reg.next(`ACK ${ref}`, 5000, from);
      rig.scanner.send(code());
      const paid = await reg.next(new RegExp(`^(PAID|FAILED) ${ref} `), 15000, from);
      t.match(paid, /^PAID /);
      const outTradeNo = paid.split(' ')[2]!;
      if (point.scenario) rig.sim.setRefundScenario(outTradeNo, point.scenario);

      const killed = point.arm(rig, rid);
      from = reg.mark;
      reg.send(`REFUND ${ref} 1500 ${rid}`);
      await killed;
      await rig.daemon!.exited;

      // Where the journal stood at the instant of the power cut.
      const db = new Database(rig.dbPath, { readonly: true });
      const atKill = db.prepare('SELECT state, out_refund_no FROM refunds WHERE rid = ?').get(rid) as { state: string; out_refund_no: string } | undefined;
      db.close();
      results.push(`${point.name}: journal ${atKill?.state ?? 'no row'}, requests at the gateway ${rig.sim.requests().filter((r) => r.call === 'refund').length}`);

      await rig.startDaemon();
      from = reg.mark;
      reg.send(`REFUND ${ref} 1500 ${rid}`);
      const line = await reg.next(new RegExp(`^(REFUNDED|FAILED|PENDING|ERR) ${rid}`), 20000, from);
      if (atKill) t.match(line, new RegExp(`^(REFUNDED ${rid} ${ref} 1500 ${atKill.out_refund_no}|FAILED ${rid} REFUND_PENDING )`), 'one final line for the RID');
      else t.match(line, /^REFUNDED /, 'not recorded before the cut: the repeated REFUND is a new one');

      const mine = rig.sim.refunds().filter((r) => r.outTradeNo === outTradeNo);
      t.ok(mine.length <= 1, `at most one refund at WeChat Pay for ${rid} (${mine.length})`);
      const journal = new Database(rig.dbPath, { readonly: true });
      const rows = journal.prepare('SELECT out_refund_no, state FROM refunds WHERE rid = ?').all(rid) as { out_refund_no: string; state: string }[];
      journal.close();
      t.equal(rows.length, 1, 'one journal row, one out_refund_no');
      if (mine.length === 1) t.equal(mine[0]!.outRefundNo, rows[0]!.out_refund_no, 'the refund at WeChat Pay is the journalled one');
      const charge = rig.sim.ledger().find((e) => e.outTradeNo === outTradeNo)!;
      t.ok(charge.refundedFen <= charge.totalFee, 'never more than the sale');
      // The same REFUND once more: the same line, nothing new at WeChat Pay.
      const count = rig.sim.requests().filter((r) => r.call === 'refund').length;
      from = reg.mark;
      reg.send(`REFUND ${ref} 1500 ${rid}`);
      const again = await reg.next(new RegExp(`${rid}`), 10000, from);
      if (line.startsWith('REFUNDED')) t.equal(again, line);
      t.equal(rig.sim.requests().filter((r) => r.call === 'refund').length, count, 'nothing sent for the repeat');
    });
  }
  t.comment(results.join('\n'));
});
