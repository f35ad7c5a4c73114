import t from 'tap';
import { checksumOf } from '../../src/devices/register-protocol.js';
import { Rig } from '../../src/simulator/rig.js';

/**
 * The built `scanbox run` process on real ptys, against the simulator over HTTPS: the register protocol
 * (contract §3) as a cash register sees it.
 */

let n = 0;
const code = (prefix = '13'): string => `${prefix}${String(process.pid % 100000).padStart(5, '0')}7${String(++n).padStart(10, '0')}`;

t.test('register commands on the real daemon', async (t) => {
  const rig = await Rig.start({ env: { SCANBOX_SCAN_TIMEOUT_S: '5' } });
  t.teardown(() => rig.close());
  await rig.startDaemon();
  const reg = rig.register;
  const ask = async (line: string, expect: RegExp, timeoutMs = 10000): Promise<string> => {
    const from = reg.mark;
    reg.send(line);
    return reg.next(expect, timeoutMs, from);
  };

  await t.test('STATUS READY when idle', async (t) => {
    t.equal(await ask('STATUS', /^STATUS /), 'STATUS READY');
  });

  await t.test('PAY, scan, WAIT SCANNED, PAID; QUERY and a repeated PAY give the same PAID line', async (t) => {
    const from = reg.mark;
    reg.send('PAY 1234 E2E-1');
    t.equal(await reg.next(/^ACK /, 5000, from), 'ACK E2E-1');
    t.equal(await ask('STATUS', /^STATUS /), 'STATUS BUSY E2E-1');
    t.match(await ask('PAY 500 OTHER', /^ERR /), /^ERR BUSY E2E-1$/);
    rig.scanner.send(code());
    await reg.next('WAIT E2E-1 SCANNED', 10000, from);
    const paid = await reg.next(/^PAID E2E-1 /, 10000, from);
    t.match(paid, /^PAID E2E-1 BENCH01[A-Z0-9]{4}\d{8} \d{28}$/);
    const [, , outTradeNo, transactionId] = paid.split(' ');
    t.equal(rig.sim.entry(outTradeNo!)?.transactionId, transactionId, 'the register was told the gateway truth');
    t.equal(await ask('QUERY E2E-1', /^(PAID|FAILED|PENDING|ERR) /), paid);
    const before = rig.sim.requests().length;
    t.equal(await ask('PAY 1234 E2E-1', /^(PAID|ACK|ERR|FAILED) /), paid, 'same PAID line again');
    t.equal(rig.sim.requests().length, before, 'nothing sent for the repeated PAY');
    t.equal(rig.sim.ledger().filter((e) => e.attach === 'E2E-1' && e.charged).length, 1);
  });

  await t.test('password wait: WAIT PASSWORD, then PAID', async (t) => {
    const payment = code();
    rig.sim.setScenario(payment, { outcome: 'userpaying', confirmAfterMs: 1500 });
    const from = reg.mark;
    reg.send('PAY 2000 E2E-PW');
    await reg.next('ACK E2E-PW', 5000, from);
    rig.scanner.send(payment);
    await reg.next('WAIT E2E-PW PASSWORD', 10000, from);
    t.match(await reg.next(/^(PAID|FAILED) E2E-PW/, 20000, from), /^PAID E2E-PW /);
  });

  await t.test('NOTENOUGH is shown plainly; the same REF may then be paid with another card', async (t) => {
    const poor = code();
    rig.sim.setScenario(poor, { outcome: 'NOTENOUGH' });
    let from = reg.mark;
    reg.send('PAY 700 E2E-NE');
    await reg.next('ACK E2E-NE', 5000, from);
    rig.scanner.send(poor);
    t.match(await reg.next(/^(PAID|FAILED) E2E-NE/, 10000, from), /^FAILED E2E-NE NOTENOUGH \S/);
    from = reg.mark;
    reg.send('PAY 700 E2E-NE');
    await reg.next('ACK E2E-NE', 5000, from);
    rig.scanner.send(code());
    t.match(await reg.next(/^(PAID|FAILED) E2E-NE/, 10000, from), /^PAID E2E-NE /);
  });

  await t.test('CANCEL before the scan: FAILED CANCELLED, nothing sent', async (t) => {
    const before = rig.sim.requests().length;
    const from = reg.mark;
    reg.send('PAY 300 E2E-C');
    await reg.next('ACK E2E-C', 5000, from);
    reg.send('CANCEL E2E-C');
    t.match(await reg.next(/^FAILED E2E-C/, 5000, from), /^FAILED E2E-C CANCELLED \S/);
    t.equal(rig.sim.requests().length, before);
    t.equal(await ask('STATUS', /^STATUS /), 'STATUS READY');
  });

  await t.test('an Alipay code ends the sale locally as NOT_WECHAT_CODE, saying so', async (t) => {
    const before = rig.sim.requests().length;
    const from = reg.mark;
    reg.send('PAY 300 E2E-ALI');
    await reg.next('ACK E2E-ALI', 5000, from);
    rig.scanner.send('286012345678901234');
    const line = await reg.next(/^FAILED E2E-ALI/, 5000, from);
    t.match(line, /^FAILED E2E-ALI NOT_WECHAT_CODE .*Alipay/i);
    t.equal(rig.sim.requests().length, before, 'no request to the API');
  });

  await t.test('no scan within SCANBOX_SCAN_TIMEOUT_S: FAILED NO_SCAN', async (t) => {
    const from = reg.mark;
    reg.send('PAY 300 E2E-NS');
    await reg.next('ACK E2E-NS', 5000, from);
    t.match(await reg.next(/^FAILED E2E-NS/, 15000, from), /^FAILED E2E-NS NO_SCAN \S/);
  });

  await t.test('a scan with no open sale is ignored', async (t) => {
    const before = rig.sim.requests().length;
    const mark = rig.daemon!.mark;
    rig.scanner.send(code());
    await rig.daemon!.waitFor(/scan ignored/, 5000, mark);
    t.equal(rig.sim.requests().length, before);
    t.equal(await ask('STATUS', /^STATUS /), 'STATUS READY');
  });

  await t.test('CANCEL during the password wait: reversed, FAILED CANCELLED', async (t) => {
    const payment = code();
    rig.sim.setScenario(payment, { outcome: 'userpaying' });
    const from = reg.mark;
    reg.send('PAY 4200 E2E-CPW');
    await reg.next('ACK E2E-CPW', 5000, from);
    rig.scanner.send(payment);
    await reg.next('WAIT E2E-CPW PASSWORD', 10000, from);
    reg.send('CANCEL E2E-CPW');
    // WeChat Pay's rule: no reverse within 15 s of the order.
    const line = await reg.next(/^(PAID|FAILED) E2E-CPW/, 30000, from);
    t.match(line, /^FAILED E2E-CPW CANCELLED /);
    const order = rig.sim.ledger().find((e) => e.attach === 'E2E-CPW')!;
    t.equal(order.reversed, true);
    t.equal(order.charged, false);
  });

  await t.test('checksums: a PAY with *HH gets every line about its sale with *HH', async (t) => {
    const from = reg.mark;
    const body = 'PAY 150 E2E-CK';
    reg.send(`${body}*${checksumOf(body)}`);
    const ack = await reg.next(/^ACK E2E-CK/, 5000, from);
    t.equal(ack, `ACK E2E-CK*${checksumOf('ACK E2E-CK')}`);
    rig.scanner.send(code());
    const paid = await reg.next(/^PAID E2E-CK/, 10000, from);
    const [text, sum] = paid.split('*');
    t.equal(sum, checksumOf(text!));
    const wait = await reg.next(/^WAIT E2E-CK SCANNED/, 1000, from);
    t.equal(wait, `WAIT E2E-CK SCANNED*${checksumOf('WAIT E2E-CK SCANNED')}`);
    const bad = await ask('STATUS*00', /^ERR /);
    t.match(bad, /^ERR BAD_CHECKSUM /, 'a wrong checksum is refused, not acted on');
    const [badText, badSum] = bad.split('*');
    t.equal(badSum, checksumOf(badText!), 'and the refusal carries a checksum too');
  });

  await t.test('QUERY of an unknown REF', async (t) => {
    t.equal(await ask('QUERY NOPE-1', /^(ERR|PENDING|PAID|FAILED) /), 'ERR UNKNOWN_REF NOPE-1');
  });

  await t.test('the daemon stops on SIGTERM with exit code 0', async (t) => {
    t.equal(await rig.stopDaemon(), 0);
  });

  t.test('its whole output never holds a full payment code or the API key', async (t) => {
    const text = rig.daemon!.lines.join('\n');
    t.notOk(text.includes(rig.merchant.apiKey), 'no API key');
    t.notOk(/(?<!\d)1[0-5]\d{16}(?!\d)/.test(text), 'no WeChat payment code');
    t.notOk(text.includes('286012345678901234'), 'no Alipay code');
    t.ok(text.includes('ref=E2E-1'), 'sales can be followed by ref=');
  });
});
