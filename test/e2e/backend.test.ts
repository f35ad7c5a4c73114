import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { Rig } from '../../src/simulator/rig.js';
import { tempDir } from '../helpers/world.js';
import { StandInAplay } from '../helpers/aplay.js';
import { backendModeEnv, payCode, startBackendHere } from '../helpers/backend-rig.js';
import { JOIN_DEFAULTS, joinClips } from '../../src/devices/voice/join.js';
import { builtInVoiceDir, loadPack } from '../../src/devices/voice/pack.js';
import { tokensOf, type Announcement } from '../../src/devices/voice/phrases.js';

/**
 * The real daemon (`scanbox run` on ptys) in merchant-backend mode: no API key, no merchant certificate, no
 * merchant ids on the box; every call goes box -> backend (mutual TLS with the enrolled certificate) -> the
 * simulator and back. The register hears the same lines as in direct mode; the API key reaches no box file or
 * log; a revoked box is refused and nothing reaches WeChat Pay.
 */

t.test('a box in backend mode at the counter', async (t) => {
  const rig = await Rig.start();
  t.teardown(() => rig.close());
  const dir = tempDir('scanbox-backend-e2e-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const backend = await startBackendHere(rig, dir);
  t.teardown(() => backend.close());
  const { store, server } = backend;
  const files = await backend.enrol('BENCH01', join(rig.dir, 'backend-credentials'));
  // The box's configuration: the backend instead of the merchant's ids and secrets (empty = unset).
  const box = {
    ...backendModeEnv(server.origin, files),
    SCANBOX_REFUNDS: 'register',
    SCANBOX_USERPAYING_POLL_S: '1',
    SCANBOX_USERPAYING_TIMEOUT_S: '5',
  };
  // The voice speaks in backend mode as in direct mode: a stand-in aplay records what it is given.
  const aplay = new StandInAplay(join(dir, 'aplay'));
  const daemon = await rig.startDaemon({ ...box, ...aplay.env(), SCANBOX_AUDIO_DEVICE: 'plughw:CARD=Test,DEV=0' });
  const reg = rig.register;
  const sell = async (ref: string, amount: number, scenario?: Parameters<Rig['sim']['setScenario']>[1]) => {
    const from = reg.mark;
    reg.send(`PAY ${amount} ${ref}`);
    await reg.next(`ACK ${ref}`, 5000, from);
    const payment = payCode();
    if (scenario) rig.sim.setScenario(payment, scenario);
    rig.scanner.send(payment);
    return reg.next(new RegExp(`^(PAID|FAILED) ${ref} `), 40000, from);
  };

  await t.test('paid, password, timeout -> reverse, payer cancel, a refund: the same lines as in direct mode', async (t) => {
    const paid = await sell('BK-1', 1234);
    t.match(paid, /^PAID BK-1 BENCH01[A-Z0-9]{4}\d{8} \d{28}$/);
    t.ok(rig.sim.entry(paid.split(' ')[2]!)?.charged, 'charged at WeChat Pay, through the backend');
    t.match(await sell('BK-2', 500, { outcome: 'userpaying', confirmAfterMs: 1500 }), /^PAID BK-2 /);
    t.match(await sell('BK-3', 800, { outcome: 'userpaying' }), /^FAILED BK-3 TIMEOUT_REVERSED /);
    // The payer cancels in WeChat: reversed through the backend.
    t.match(await sell('BK-5', 900, { outcome: 'userpaying', cancelAfterMs: 1000 }), /^FAILED BK-5 REVERSED /);
    t.notOk(rig.sim.ledger().find((e) => e.attach === 'BK-5')?.charged, 'nothing kept after the payer cancelled');
    t.notOk(rig.sim.ledger().find((e) => e.attach === 'BK-3')?.charged, 'reversed through the backend');
    const from = reg.mark;
    reg.send('REFUND BK-1 234 BKR-1');
    t.match(await reg.next(/^(REFUNDED|FAILED) BKR-1/, 20000, from), /^REFUNDED BKR-1 BK-1 234 /);
    const calls = (await store.calls({ deviceId: 'BENCH01' })).map((c) => c.call);
    for (const call of ['micropay', 'orderquery', 'reverse', 'refund']) t.ok(calls.includes(call), `the backend journalled ${call}`);
  });

  await t.test('the box says each result in backend mode too, once, in order', async (t) => {
    const loaded = loadPack(builtInVoiceDir());
    if (!loaded.ok) return void t.fail(loaded.problems.join('\n'));
    const pack = loaded.pack;
    const expected: Announcement[] = [
      { kind: 'paid', fen: 1234 },
      { kind: 'password' },
      { kind: 'paid', fen: 500 },
      { kind: 'password' },
      { kind: 'given_back' },
      { kind: 'password' },
      { kind: 'given_back' },
      { kind: 'refunded', fen: 234 },
    ];
    const plays = await aplay.waitFor(expected.length);
    const words = (a: Announcement): string => tokensOf(a).join('');
    const known = new Map(expected.map((a) => [words(a), joinClips(tokensOf(a).map((token) => pack.clips.get(token)!), { ...JOIN_DEFAULTS, rate: pack.rate, gain: 1 })]));
    const heard = plays.map((play) => [...known].find(([, pcm]) => play.pcm.equals(pcm))?.[0] ?? `unknown PCM (${play.pcm.length} bytes)`);
    t.same(heard, expected.map(words), '微信收款十二点三四元, 请输入支付密码, 微信收款五元, 请输入支付密码, 支付已撤销, 请输入支付密码, 支付已撤销, 退款成功二点三四元');
  });

  await t.test('the API key is in no box log and no box file', async (t) => {
    t.notOk(daemon.lines.some((l) => l.includes(rig.merchant.apiKey)), 'not in the daemon log');
    for (const name of readdirSync(join(rig.dir, 'backend-credentials'))) {
      t.notOk(readFileSync(join(rig.dir, 'backend-credentials', name), 'utf8').includes(rig.merchant.apiKey), name);
    }
    t.notOk(readFileSync(rig.dbPath).includes(Buffer.from(rig.merchant.apiKey)), 'not in the box journal');
    t.ok(daemon.lines.some((l) => /scanbox starting .*api="?backend https:\/\/127\.0\.0\.1/.test(l)), 'the daemon says it runs through the backend');
  });

  await t.test('a revoked box: the register hears a clear code, nothing reaches WeChat Pay', async (t) => {
    await server.revoke('BENCH01');
    const before = rig.sim.requests().length;
    const line = await sell('BK-4', 600);
    t.match(line, /^FAILED BK-4 (NOAUTH|OFFLINE) /);
    t.equal(rig.sim.requests().length, before, 'nothing reached WeChat Pay');
    t.comment(`a revoked box's sale: ${line}`);
  });
});
