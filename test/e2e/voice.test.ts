import t from 'tap';
import { join } from 'node:path';
import { systemClock } from '../../src/clock.js';
import { JOIN_DEFAULTS, joinClips } from '../../src/devices/voice/join.js';
import { builtInVoiceDir, loadPack } from '../../src/devices/voice/pack.js';
import { aplayArgs } from '../../src/devices/voice/player.js';
import { Journal } from '../../src/journal/journal.js';
import { Rig } from '../../src/simulator/rig.js';
import { StandInAplay, type Play } from '../helpers/aplay.js';
import { cli } from '../helpers/cli.js';

/**
 * The voice of the real daemon (contract §9) on its ptys against the simulator, with a stand-in `aplay` first
 * on its PATH that records every byte it is given: what the box says, once, after the register line; never for
 * a PAID line given again, a restart or a recovered sale; and a broken speaker changes nothing else.
 */

const DEVICE = 'plughw:CARD=Test,DEV=0';
const loaded = loadPack(builtInVoiceDir());
if (!loaded.ok) throw new Error(loaded.problems.join('\n'));
const pack = loaded.pack;

/** The PCM the box must play for these clips, at SCANBOX_VOLUME 80 (the clips as made). */
const pcmOf = (...tokens: string[]): Buffer => joinClips(tokens.map((token) => pack.clips.get(token)!), { ...JOIN_DEFAULTS, rate: pack.rate, gain: 1 });

/** Which announcement a recorded play is, by its exact bytes. */
function said(play: Play, candidates: Record<string, Buffer>): string {
  for (const [words, pcm] of Object.entries(candidates)) if (play.pcm.equals(pcm)) return words;
  return `unknown PCM (${play.pcm.length} bytes)`;
}

let n = 0;
const code = (): string => `13${String(process.pid % 100000).padStart(5, '0')}8${String(++n).padStart(10, '0')}`;

async function sale(rig: Rig, ref: string, amount: number, payment = code()): Promise<string> {
  const from = rig.register.mark;
  rig.register.send(`PAY ${amount} ${ref}`);
  await rig.register.next(`ACK ${ref}`, 5000, from);
  rig.scanner.send(payment);
  return rig.register.next(new RegExp(`^(PAID|FAILED) ${ref} `), 20000, from);
}

const KNOWN: Record<string, Buffer> = {
  微信收款十二点三四元: pcmOf('微信收款', '十', '二', '点', '三', '四', '元'),
  请输入支付密码: pcmOf('请输入支付密码'),
  微信收款两百零五元: pcmOf('微信收款', '两', '百', '零', '五', '元'),
  支付失败余额不足: pcmOf('支付失败', '余额不足'),
  支付已撤销: pcmOf('支付已撤销'),
  微信收款三元: pcmOf('微信收款', '三', '元'),
  微信收款四元: pcmOf('微信收款', '四', '元'),
  退款成功二点三四元: pcmOf('退款成功', '二', '点', '三', '四', '元'),
  退款成功五元: pcmOf('退款成功', '五', '元'),
};

t.test('the box speaks each result once, after the register line', async (t) => {
  const rig = await Rig.start({ env: { SCANBOX_AUDIO_DEVICE: DEVICE, SCANBOX_USERPAYING_POLL_S: '1', SCANBOX_USERPAYING_TIMEOUT_S: '30' } });
  t.teardown(() => rig.close());
  const aplay = new StandInAplay(join(rig.dir, 'aplay'));
  const daemon = await rig.startDaemon(aplay.env());
  let heard = 0;
  const next = async (): Promise<Play> => (await aplay.waitFor(++heard))[heard - 1]!;

  await t.test('a PAID sale plays exactly 微信收款 + its amount, once, on the configured device', async (t) => {
    const paidAt: number[] = [];
    const from = rig.register.mark;
    const line = await sale(rig, 'V-1', 1234);
    paidAt.push(performance.timeOrigin + performance.now());
    t.match(line, /^PAID V-1 /);
    await rig.register.next(/^PAID V-1 /, 1000, from);
    const play = await next();
    t.equal(said(play, KNOWN), '微信收款十二点三四元');
    t.ok(play.pcm.equals(KNOWN['微信收款十二点三四元']!), 'byte for byte');
    t.same(play.args, aplayArgs(DEVICE, 22050), 'aplay -q -D DEVICE -t raw -f S16_LE -c 1 -r 22050 -');
    t.match(daemon.lines.join('\n'), /<7>voice words=微信收款十二点三四元 device="plughw:CARD=Test,DEV=0"/);
  });

  await t.test('a replayed PAY of a PAID REF plays nothing', async (t) => {
    const from = rig.register.mark;
    rig.register.send('PAY 1234 V-1');
    t.match(await rig.register.next(/^PAID V-1 /, 5000, from), /^PAID V-1 /);
    rig.register.send('QUERY V-1');
    await rig.register.next(/^PAID V-1 /, 5000, rig.register.mark - 1);
    // The next sale's announcement comes next in the one queue: nothing was played for the replay before it.
    t.match(await sale(rig, 'V-2', 300), /^PAID V-2 /);
    const play = await next();
    t.equal(said(play, KNOWN), '微信收款三元');
    t.equal(aplay.plays().length, heard, 'nothing else played');
  });

  await t.test('a password sale plays 请输入支付密码, then the amount', async (t) => {
    const payment = code();
    rig.sim.setScenario(payment, { outcome: 'userpaying', confirmAfterMs: 1500 });
    const from = rig.register.mark;
    rig.register.send('PAY 20500 V-PW');
    await rig.register.next('ACK V-PW', 5000, from);
    rig.scanner.send(payment);
    await rig.register.next('WAIT V-PW PASSWORD', 10000, from);
    t.equal(said(await next(), KNOWN), '请输入支付密码', 'said while the payer confirms');
    t.match(await rig.register.next(/^(PAID|FAILED) V-PW /, 20000, from), /^PAID V-PW /);
    t.equal(said(await next(), KNOWN), '微信收款两百零五元');
    t.equal(aplay.plays().length, heard, 'the password prompt once, though the box asked WeChat Pay several times');
  });

  await t.test('the payer side and given back: 支付失败余额不足; a CANCEL before the scan is silent', async (t) => {
    const poor = code();
    rig.sim.setScenario(poor, { outcome: 'NOTENOUGH' });
    t.match(await sale(rig, 'V-NE', 700, poor), /^FAILED V-NE NOTENOUGH /);
    t.equal(said(await next(), KNOWN), '支付失败余额不足');
    const from = rig.register.mark;
    rig.register.send('PAY 900 V-C');
    await rig.register.next('ACK V-C', 5000, from);
    rig.register.send('CANCEL V-C');
    t.match(await rig.register.next(/^FAILED V-C CANCELLED /, 5000, from), /CANCELLED/);
    t.match(await sale(rig, 'V-3', 400), /^PAID V-3 /);
    t.equal(said(await next(), KNOWN), '微信收款四元', 'nothing for the cancel before it');
  });

  await t.test('a restart: the sale cut off mid-payment is recovered and reversed in silence; a PAID REF again is silent', async (t) => {
    const payment = code();
    rig.sim.setScenario(payment, { outcome: 'userpaying' });
    const from = rig.register.mark;
    rig.register.send('PAY 800 V-CUT');
    await rig.register.next('ACK V-CUT', 5000, from);
    rig.scanner.send(payment);
    await rig.register.next('WAIT V-CUT PASSWORD', 10000, from);
    t.equal(said(await next(), KNOWN), '请输入支付密码');
    await rig.killDaemon();
    await rig.startDaemon(aplay.env());
    const again = rig.register.mark;
    rig.register.send('QUERY V-CUT');
    t.match(await rig.register.next(/^(FAILED|PENDING) V-CUT/, 10000, again), /^FAILED V-CUT INTERRUPTED /, 'recovery reversed it');
    rig.register.send('PAY 1234 V-1');
    t.match(await rig.register.next(/^PAID V-1 /, 5000, again), /^PAID V-1 /);
    t.match(await sale(rig, 'V-4', 300), /^PAID V-4 /);
    t.equal(said(await next(), KNOWN), '微信收款三元', 'the first thing said after the restart is the new sale');
    t.equal(aplay.plays().length, heard);
  });
});

t.test('a refund is said once WeChat Pay accepts it, from the register and from scanbox refund alike', async (t) => {
  const rig = await Rig.start({ env: { SCANBOX_AUDIO_DEVICE: DEVICE, SCANBOX_REFUNDS: 'register' } });
  t.teardown(() => rig.close());
  const aplay = new StandInAplay(join(rig.dir, 'aplay'));
  await rig.startDaemon(aplay.env());
  let heard = 0;
  const next = async (): Promise<Play> => (await aplay.waitFor(++heard))[heard - 1]!;
  const paid = await sale(rig, 'VR-1', 1234);
  t.match(paid, /^PAID VR-1 /);
  const outTradeNo = paid.split(' ')[2]!;
  t.equal(said(await next(), KNOWN), '微信收款十二点三四元');

  await t.test('from the register: 退款成功 + the amount, after the REFUNDED line', async (t) => {
    const from = rig.register.mark;
    rig.register.send('REFUND VR-1 234 VRR-1');
    t.match(await rig.register.next(/^(REFUNDED|FAILED|PENDING) VRR-1/, 15000, from), /^REFUNDED VRR-1 VR-1 234 /);
    t.equal(said(await next(), KNOWN), '退款成功二点三四元');
  });

  await t.test("from the technician's scanbox refund (the daemon's control socket): the same words", async (t) => {
    const run = await cli(['refund', 'VR-1', '500', '--id', 'VRT-1'], rig.env);
    t.equal(run.status, 0, run.stdout + run.stderr);
    t.match(run.stdout, /^REFUNDED VRT-1 VR-1 500 \S+\naccepted by WeChat Pay by the running daemon/m);
    t.equal(said(await next(), KNOWN), '退款成功五元');
    t.equal(rig.sim.refunds().filter((r) => r.outTradeNo === outTradeNo).length, 2, 'two refunds at WeChat Pay');
  });

  await t.test('a RID refunded before, and refunds that fail, are not said (contract §9 has no words for a failed refund)', async (t) => {
    const again = await cli(['refund', 'VR-1', '500', '--id', 'VRT-1'], rig.env);
    t.equal(again.status, 0, again.stdout + again.stderr);
    t.match(again.stdout, /this RID was refunded before: nothing refunded again/);
    const over = await cli(['refund', 'VR-1', '600', '--id', 'VRT-2'], rig.env);
    t.equal(over.status, 1);
    t.match(over.stdout, /^FAILED VRT-2 OVER_AMOUNT /m);
    // WeChat Pay refuses it: the merchant's available balance is short.
    rig.sim.setRefundScenario(outTradeNo, { outcome: 'NOTENOUGH' });
    const refused = await cli(['refund', 'VR-1', '100', '--id', 'VRT-3'], rig.env);
    t.equal(refused.status, 1);
    t.match(refused.stdout, /^FAILED VRT-3 NOTENOUGH /m);
    const from = rig.register.mark;
    rig.register.send('REFUND VR-1 100 VRR-2');
    t.match(await rig.register.next(/^(REFUNDED|FAILED|PENDING) VRR-2/, 15000, from), /^FAILED VRR-2 NOTENOUGH /);
    t.equal(rig.sim.refunds().filter((r) => r.outTradeNo === outTradeNo).length, 2, 'still the two refunds');
    // The next sale's announcement comes next in the one queue: nothing was played before it.
    t.match(await sale(rig, 'VR-2', 300), /^PAID VR-2 /);
    t.equal(said(await next(), KNOWN), '微信收款三元', 'nothing for the repeat or the failed refunds');
    t.equal(aplay.plays().length, heard, 'nothing else played');
  });
});

t.test('a broken speaker: the sale, the register line and the journal are untouched; one warning', async (t) => {
  const rig = await Rig.start({ env: { SCANBOX_AUDIO_DEVICE: DEVICE } });
  t.teardown(() => rig.close());
  const aplay = new StandInAplay(join(rig.dir, 'aplay'));
  const daemon = await rig.startDaemon(aplay.env('busy'));
  const first = await sale(rig, 'VB-1', 1234);
  t.match(first, /^PAID VB-1 \S+ \d{28}$/);
  const second = await sale(rig, 'VB-2', 500);
  t.match(second, /^PAID VB-2 /);
  const outTradeNo = first.split(' ')[2]!;
  t.equal(rig.sim.entry(outTradeNo)?.charged, true, 'charged once at the gateway');
  // The warnings come from the queue, after the lines: wait for the second attempt's debug line.
  const deadline = Date.now() + 10000;
  while (!daemon.lines.some((l) => /voice: not played words=微信收款五元/.test(l)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const warnings = daemon.lines.filter((l) => l.startsWith('<4>voice'));
  t.equal(warnings.length, 1, 'said once at warning, not once per sale');
  t.match(warnings[0], /reason="aplay: main:831: audio open error: Device or resource busy \(the speaker is in use by another program\)"/);
  t.ok(daemon.lines.some((l) => /^<7>light .*state=paid/.test(l)), 'the light and buzzer still tell the result');
  const journal = Journal.open(rig.dbPath, { deviceId: 'TEST', clock: systemClock, readonly: true });
  try {
    t.equal(journal.byOutTradeNo(outTradeNo)?.state, 'paid');
  } finally {
    journal.close();
  }
  t.equal(aplay.plays().length, 0);
});

t.test('no aplay at all (alsa-utils missing): the sale goes on, the reason is said', async (t) => {
  const rig = await Rig.start({ env: { SCANBOX_AUDIO_DEVICE: DEVICE } });
  t.teardown(() => rig.close());
  // A PATH with node's own directory only: no aplay anywhere.
  const daemon = await rig.startDaemon({ PATH: join(process.execPath, '..') });
  t.match(await sale(rig, 'VN-1', 100), /^PAID VN-1 /);
  const deadline = Date.now() + 10000;
  while (!daemon.lines.some((l) => l.startsWith('<4>voice')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.match(daemon.lines.find((l) => l.startsWith('<4>voice')), /reason="aplay not found: install alsa-utils \(apt-get install alsa-utils\)"/);
});
