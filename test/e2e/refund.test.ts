import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { withChecksum } from '../../src/devices/register-protocol.js';
import { Rig } from '../../src/simulator/rig.js';

/**
 * Refunds on the built `scanbox run` process, on real ptys, against the simulator over HTTPS with the merchant
 * certificate (contract §3 REFUND / QUERY REFUND, §6.6): what the register hears, what the journal keeps across
 * a restart, and what the simulator's refund ledger says WeChat Pay did.
 */

const CLI = new URL('../../dist/cli.js', import.meta.url).pathname;
let n = 0;
const code = (): string => `13${String(process.pid % 100000).padStart(5, '0')}8${String(++n).padStart(10, '0')}`;

/** `scanbox ARGS` as a technician runs it; asynchronous, so the simulator in this process keeps answering. */
function cli(rig: Rig, args: string[], extraEnv: Record<string, string> = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined && !key.startsWith('SCANBOX_')) env[key] = value;
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...env, ...rig.env, ...extraEnv }, encoding: 'utf8', timeout: 90_000 }, (error, stdout, stderr) => {
      const status = error ? (typeof error.code === 'number' ? error.code : null) : 0;
      resolve({ status, stdout, stderr });
    });
  });
}

t.test('register refunds on the real daemon', async (t) => {
  const rig = await Rig.start({ env: { SCANBOX_REFUNDS: 'register', SCANBOX_REFUND_DAY_MAX: '5000' } });
  t.teardown(() => rig.close());
  await rig.startDaemon();
  const reg = rig.register;
  const ask = async (line: string, expect: RegExp, timeoutMs = 15000): Promise<string> => {
    const from = reg.mark;
    reg.send(line);
    return reg.next(expect, timeoutMs, from);
  };
  const pay = async (ref: string, amount: number): Promise<string> => {
    const from = reg.mark;
    reg.send(`PAY ${amount} ${ref}`);
    await reg.next(`ACK ${ref}`, 5000, from);
    rig.scanner.send(code());
    const paid = await reg.next(new RegExp(`^(PAID|FAILED) ${ref} `), 15000, from);
    if (!paid.startsWith('PAID')) throw new Error(paid);
    return paid.split(' ')[2]!;
  };

  const outTradeNo = await pay('RF-1', 3000);

  await t.test('a partial refund: ACK, REFUNDED with the out_refund_no; WeChat Pay refunded it once', async (t) => {
    const from = reg.mark;
    reg.send('REFUND RF-1 1200 RID-1');
    t.equal(await reg.next(/^ACK /, 5000, from), 'ACK RID-1');
    const line = await reg.next(/^(REFUNDED|FAILED|PENDING) RID-1/, 15000, from);
    t.match(line, /^REFUNDED RID-1 RF-1 1200 BENCH01[A-Z0-9]{4}R\d{8}$/);
    const outRefundNo = line.split(' ')[4]!;
    const ledger = rig.sim.refunds();
    t.equal(ledger.length, 1);
    t.match(ledger[0], { outRefundNo, outTradeNo, refundFee: 1200, totalFee: 3000 });
    t.equal(await ask('QUERY REFUND RID-1', /RID-1/), line, 'QUERY REFUND tells the same line');
    t.equal(await ask('REFUND RF-1 1200 RID-1', /RID-1/), line, 'the same REFUND again: the same line');
    t.equal(rig.sim.refunds().length, 1, 'nothing refunded again');
    t.equal(rig.sim.requests().filter((r) => r.call === 'refund').length, 1, 'not even asked again');
  });

  await t.test('decided by the box, nothing sent: RID_REUSED, OVER_AMOUNT, NOT_PAID, REFUND_LIMIT, BUSY', async (t) => {
    const before = rig.sim.requests().length;
    t.equal(await ask('REFUND RF-1 1300 RID-1', /RID-1/), 'ERR RID_REUSED RID-1');
    t.match(await ask('REFUND RF-1 1801 RID-2', /^FAILED RID-2/), /^FAILED RID-2 OVER_AMOUNT .*18\.00 yuan left/);
    t.match(await ask('REFUND NOSUCH 100 RID-3', /^FAILED RID-3/), /^FAILED RID-3 NOT_PAID /);
    t.match(await ask('QUERY REFUND RID-2', /RID-2/), /^ERR UNKNOWN_REF RID-2$/, 'a refusal records nothing');
    t.equal(rig.sim.requests().length, before);
    await pay('RF-2', 9000);
    t.match(await ask('REFUND RF-2 3801 RID-4', /^FAILED RID-4/), /^FAILED RID-4 REFUND_LIMIT .*12\.00 of 50\.00 yuan/, 'the day cap counts the register');
    const from = reg.mark;
    reg.send('PAY 100 RF-BUSY');
    await reg.next('ACK RF-BUSY', 5000, from);
    t.equal(await ask('REFUND RF-1 100 RID-5', /RID-5|BUSY/), 'ERR BUSY RF-BUSY', 'one thing at a time');
    reg.send('CANCEL RF-BUSY');
    await reg.next(/^FAILED RF-BUSY CANCELLED/, 5000, from);
  });

  await t.test('checksummed lines are answered with checksums', async (t) => {
    const from = reg.mark;
    reg.send(withChecksum('REFUND RF-1 100 RID-CS', true));
    t.equal(await reg.next(/^ACK RID-CS/, 5000, from), withChecksum('ACK RID-CS', true));
    t.match(await reg.next(/^(REFUNDED|FAILED) RID-CS/, 15000, from), /^REFUNDED RID-CS RF-1 100 \S+\*[0-9A-F]{2}$/);
  });

  await t.test('SYSTEMERROR although accepted: REFUNDED after refundquery, one refund at WeChat Pay', async (t) => {
    rig.sim.setRefundScenario(outTradeNo, { outcome: 'SUCCESS', faults: { refund: [{ kind: 'system_error' }] } });
    const line = await ask('REFUND RF-1 200 RID-SE', /^(REFUNDED|FAILED|PENDING) RID-SE/);
    t.match(line, /^REFUNDED RID-SE RF-1 200 /);
    t.equal(rig.sim.refunds().filter((r) => r.outRefundNo === line.split(' ')[4]).length, 1);
  });

  await t.test('after a restart: the same lines, nothing refunded again; status and tx show the refunds', async (t) => {
    const line = await ask('QUERY REFUND RID-1', /RID-1/);
    await rig.stopDaemon();
    await rig.startDaemon();
    t.equal(await ask('QUERY REFUND RID-1', /RID-1/), line);
    t.equal(await ask('REFUND RF-1 1200 RID-1', /RID-1/), line);
    const refundRequests = rig.sim.requests().filter((r) => r.call === 'refund').length;
    t.equal(await ask('REFUND RF-1 1200 RID-1', /RID-1/), line);
    t.equal(rig.sim.requests().filter((r) => r.call === 'refund').length, refundRequests, 'nothing sent');
    const shown = await cli(rig, ['tx', 'show', 'RF-1']);
    t.equal(shown.status, 0, shown.stderr);
    t.match(shown.stdout, /refunds \(3; 15\.00 of 30\.00 yuan refunded or on its way\)/);
    t.match(shown.stdout, /refund RID-1 +12\.00 yuan +(accepted|succeeded)/);
  });

  await t.test('scanbox refund through the running daemon: no register cap, printed RID, idempotent with --id', async (t) => {
    const first = await cli(rig, ['refund', 'RF-2', '4000', '--id', 'TECH-1']);
    t.equal(first.status, 0, first.stdout + first.stderr);
    t.match(first.stdout, /^REFUNDED TECH-1 RF-2 4000 /m);
    t.match(first.stdout, /by the running daemon/);
    const again = await cli(rig, ['refund', 'RF-2', '4000', '--id', 'TECH-1']);
    t.equal(again.status, 0);
    t.match(again.stdout, /nothing refunded again/);
    const over = await cli(rig, ['refund', 'RF-2', '5001']);
    t.equal(over.status, 1);
    t.match(over.stdout, /^refund T[0-9A-Z]+: 5001 fen of RF-2 \(a new RID/m);
    t.match(over.stdout, /OVER_AMOUNT/);
    const bad = await cli(rig, ['refund', 'RF-2', '12.5']);
    t.equal(bad.status, 2);
    t.equal(rig.sim.refunds().filter((r) => r.refundFee === 4000).length, 1);
  });

  await t.test('scanbox refund twice: the same REF and amount within 10 minutes refused without --id unless --again', async (t) => {
    const rf2 = rig.sim.ledger().find((e) => e.attach === 'RF-2')!.outTradeNo;
    const count = (): number => rig.sim.refunds().filter((r) => r.outTradeNo === rf2 && r.refundFee === 300).length;
    const first = await cli(rig, ['refund', 'RF-2', '300']);
    t.equal(first.status, 0, first.stdout + first.stderr);
    const rid = /^refund (T[0-9A-Z]+): 300 fen of RF-2 \(a new RID; to ask about it again: scanbox refund RF-2 300 --id (T[0-9A-Z]+)\)$/m.exec(first.stdout);
    t.ok(rid && rid[1] === rid[2], 'the RID and the command that follows it up, printed first');
    t.ok(first.stdout.indexOf(`refund ${rid?.[1]}`) < first.stdout.indexOf('REFUNDED'), 'the RID before the outcome');
    const twice = await cli(rig, ['refund', 'RF-2', '300']);
    t.equal(twice.status, 1, 'a second one without --id: refused');
    t.match(twice.stdout, new RegExp(`^refused: refund ${rid?.[1]} of 300 fen of RF-2 was asked less than a minute ago \\(state (accepted|succeeded)\\); nothing sent`, 'm'));
    t.match(twice.stdout, new RegExp(`to follow that one up \\(nothing is refunded twice\\): scanbox refund RF-2 300 --id ${rid?.[1]}`));
    t.match(twice.stdout, /scanbox refund RF-2 300 --again/);
    t.equal(count(), 1, 'WeChat Pay refunded it once');
    const followed = await cli(rig, ['refund', 'RF-2', '300', '--id', rid![1]!]);
    t.equal(followed.status, 0);
    t.match(followed.stdout, /nothing refunded again/);
    const other = await cli(rig, ['refund', 'RF-2', '301']);
    t.equal(other.status, 0, 'another amount is another refund');
    const meant = await cli(rig, ['refund', 'RF-2', '300', '--again']);
    t.equal(meant.status, 0, meant.stdout);
    t.equal(count(), 2, '--again: refunded once more, on purpose');
  });

  await t.test('the daemon does not answer: the refund may be under way, and the command that follows it up', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'scanbox-mute-'));
    const server = net.createServer((socket) => socket.once('data', () => socket.end()));
    await new Promise<void>((resolve) => server.listen(join(dir, 'control.sock'), resolve));
    t.teardown(() => {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const before = rig.sim.refunds().length;
    const mute = await cli(rig, ['refund', 'RF-2', '200'], { RUNTIME_DIRECTORY: dir });
    t.equal(mute.status, 1);
    const rid = /^refund (T[0-9A-Z]+): 200 fen of RF-2/m.exec(mute.stdout)?.[1];
    t.ok(rid, 'the RID first');
    t.match(mute.stdout, /^no answer from the daemon: /m);
    t.match(mute.stdout, new RegExp(`^the refund may be under way: do not refund again under a new RID; follow it up \\(nothing is refunded twice\\): scanbox refund RF-2 200 --id ${rid}$`, 'm'));
    t.equal(rig.sim.refunds().length, before, 'nothing reached WeChat Pay through the mute socket');
    const followed = await cli(rig, ['refund', 'RF-2', '200', '--id', rid!]);
    t.equal(followed.status, 0, followed.stdout);
    const again = await cli(rig, ['refund', 'RF-2', '200', '--id', rid!]);
    t.match(again.stdout, /nothing refunded again/);
    const rf2 = rig.sim.ledger().find((e) => e.attach === 'RF-2')!.outTradeNo;
    t.equal(rig.sim.refunds().filter((r) => r.outTradeNo === rf2 && r.refundFee === 200).length, 1, 'the follow-up refunded it exactly once');
  });

  await t.test('scanbox refund with the daemon stopped: the command refunds itself, journalled the same way', async (t) => {
    await rig.stopDaemon();
    const local = await cli(rig, ['refund', 'RF-2', '1000', '--id', 'TECH-LOCAL']);
    t.equal(local.status, 0, local.stdout + local.stderr);
    t.match(local.stdout, /daemon not running/);
    t.match(local.stdout, /^REFUNDED TECH-LOCAL RF-2 1000 /m);
    await rig.startDaemon();
    t.match(await ask('QUERY REFUND TECH-LOCAL', /TECH-LOCAL/), /^REFUNDED TECH-LOCAL RF-2 1000 /);
  });
});

t.test('refunds off (the default): FAILED REFUNDS_OFF from the register, nothing recorded', async (t) => {
  const rig = await Rig.start();
  t.teardown(() => rig.close());
  await rig.startDaemon();
  const reg = rig.register;
  const from = reg.mark;
  reg.send('REFUND ANY 100 RID-OFF');
  t.equal(await reg.next(/^ACK/, 5000, from), 'ACK RID-OFF');
  t.match(await reg.next(/^FAILED RID-OFF/, 5000, from), /^FAILED RID-OFF REFUNDS_OFF /);
  const mark = reg.mark;
  reg.send('QUERY REFUND RID-OFF');
  t.equal(await reg.next(/RID-OFF/, 5000, mark), 'ERR UNKNOWN_REF RID-OFF');
  t.equal(rig.sim.requests().filter((r) => r.call === 'refund').length, 0);
});
