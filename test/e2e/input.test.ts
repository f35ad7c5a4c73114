import t from 'tap';
import { Rig } from '../../src/simulator/rig.js';

/** Bad input on the register line: each answered ERR, no request to the API, and the box READY after. */

t.test('bad register input is answered ERR and never reaches WeChat Pay', async (t) => {
  const rig = await Rig.start({ env: { SCANBOX_MAX_AMOUNT: '50000' } });
  t.teardown(() => rig.close());
  await rig.startDaemon();
  const reg = rig.register;

  const cases: [string, string | Buffer, RegExp][] = [
    ['letters as amount', 'PAY abc R1', /^ERR BAD_AMOUNT /],
    ['negative amount', 'PAY -5 R1', /^ERR BAD_AMOUNT /],
    ['zero amount', 'PAY 0 R1', /^ERR BAD_AMOUNT /],
    ['yuan with a decimal point', 'PAY 1.50 R1', /^ERR BAD_AMOUNT /],
    ['over SCANBOX_MAX_AMOUNT', 'PAY 50001 R1', /^ERR BAD_AMOUNT .*500\.00/],
    ['missing ref', 'PAY 100', /^ERR BAD_REF /],
    ['ref with a slash', 'PAY 100 R/1', /^ERR BAD_REF /],
    ['ref of 33 characters', `PAY 100 ${'A'.repeat(33)}`, /^ERR BAD_REF /],
    ['unknown command', 'VOID 100 R1', /^ERR UNKNOWN_COMMAND /],
    ['REFUND with its words out of order', 'REFUND 100 R1', /^ERR BAD_AMOUNT /],
    ['TOTALS of a day that does not exist', 'TOTALS 20260230', /^ERR BAD_DATE /],
    ['lower-case verb', 'pay 100 R1', /^ERR UNKNOWN_COMMAND /],
    ['CANCEL without ref', 'CANCEL', /^ERR BAD_REF /],
    ['a 400-byte line', `PAY 100 ${'X'.repeat(392)}`, /^ERR LINE_TOO_LONG /],
    ['binary noise', Buffer.from([0x00, 0xff, 0x13, 0x80, 0x41, 0x07]), /^ERR BAD_LINE /],
    ['bad checksum', 'PAY 100 R1*00', /^ERR BAD_CHECKSUM /],
    ['checksum not hex', 'STATUS*ZZ', /^ERR BAD_CHECKSUM /],
  ];

  for (const [name, line, expect] of cases) {
    await t.test(name, async (t) => {
      const from = reg.mark;
      if (typeof line === 'string') reg.send(line);
      else reg.sendRaw(Buffer.concat([line, Buffer.from('\r\n')]));
      const answer = await reg.next(() => true, 5000, from);
      t.match(answer, expect);
      t.equal(reg.lines.length, from + 1, 'exactly one answer');
    });
  }

  await t.test('a line split over many writes with LF only, and CR only, still works', async (t) => {
    let from = reg.mark;
    for (const part of ['ST', 'AT', 'US\n']) reg.sendRaw(part);
    t.equal(await reg.next(/^STATUS /, 5000, from), 'STATUS READY');
    from = reg.mark;
    reg.sendRaw('STATUS\r');
    t.equal(await reg.next(/^STATUS /, 5000, from), 'STATUS READY');
  });

  await t.test('nothing reached the gateway, and the box is READY', async (t) => {
    t.equal(rig.sim.requests().length, 0);
    const from = reg.mark;
    reg.send('STATUS');
    t.equal(await reg.next(/^STATUS /, 5000, from), 'STATUS READY');
  });
});
