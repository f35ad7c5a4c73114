import t from 'tap';
import { JOIN_DEFAULTS, gainOf, joinClips, secondsOf } from '../../../src/devices/voice/join.js';
import { Announcer } from '../../../src/devices/voice/announcer.js';
import { builtInVoiceDir, loadPack } from '../../../src/devices/voice/pack.js';
import type { Player, PlayRequest } from '../../../src/devices/voice/player.js';
import { memoryLogger } from '../../../src/log.js';

/** The joined PCM, sample for sample: lead-in silence, gaps, tail, gain and clipping. */

const samplesOf = (pcm: Buffer): number[] => {
  const out: number[] = [];
  for (let i = 0; i < pcm.length; i += 2) out.push(pcm.readInt16LE(i));
  return out;
};

t.test('lead-in, clips with gaps, tail: exact samples', async (t) => {
  // 1000 Hz: 1 ms = 1 sample.
  const pcm = joinClips([Int16Array.from([1, 2, 3]), Int16Array.from([-4]), Int16Array.from([5, 6])], { rate: 1000, leadMs: 3, gapMs: 2, tailMs: 1, gain: 1 });
  t.same(samplesOf(pcm), [0, 0, 0, 1, 2, 3, 0, 0, -4, 0, 0, 5, 6, 0]);
  t.equal(pcm.length, 28, 'S16_LE: two bytes a sample');
  t.same([...pcm.subarray(6, 8)], [1, 0], 'little-endian');
});

t.test('gain scales and rounds; past full scale it clips, never wraps', async (t) => {
  const clip = Int16Array.from([100, -100, 20000, -20000, 32767, -32768, 3]);
  t.same(samplesOf(joinClips([clip], { rate: 1000, leadMs: 0, gapMs: 0, tailMs: 0, gain: 0.5 })), [50, -50, 10000, -10000, 16384, -16384, 2]);
  t.same(samplesOf(joinClips([clip], { rate: 1000, leadMs: 0, gapMs: 0, tailMs: 0, gain: 2 })), [200, -200, 32767, -32768, 32767, -32768, 6]);
});

t.test('SCANBOX_VOLUME as gain: 80 as made, 100 is +6 dB, 50 is -9 dB, 0 silent', async (t) => {
  t.equal(gainOf(80), 1);
  t.ok(Math.abs(gainOf(100) - 1.995) < 0.01);
  t.ok(Math.abs(gainOf(50) - 0.355) < 0.01);
  t.equal(gainOf(0), 0);
  for (let v = 1; v <= 100; v++) t.ok(gainOf(v) > gainOf(v - 1), `${v} louder than ${v - 1}`);
});

t.test('the announcement of 12.34 from the built-in pack: clip for clip, and how long it takes', async (t) => {
  const loaded = loadPack(builtInVoiceDir());
  if (!loaded.ok) return void t.fail(loaded.problems.join('\n'));
  const pack = loaded.pack;
  const requests: PlayRequest[] = [];
  const player: Player = async (request) => {
    requests.push(request);
    return { ok: true };
  };
  const log = memoryLogger();
  const voice = new Announcer({ settings: { device: 'plughw:CARD=Device,DEV=0', volume: 80, two: 'liang' }, pack, log, player });
  t.equal(voice.words({ kind: 'paid', fen: 1234 }), '微信收款十二点三四元');
  voice.announce({ kind: 'paid', fen: 1234 });
  await voice.drained();
  t.equal(requests.length, 1);
  const tokens = ['微信收款', '十', '二', '点', '三', '四', '元'];
  const expected = joinClips(tokens.map((token) => pack.clips.get(token)!), { ...JOIN_DEFAULTS, rate: 22050, gain: 1 });
  const pcm = await requests[0]!.pcm;
  t.ok(pcm.equals(expected), 'the clips of 微信收款 + 十二点三四元, in order, nothing else');
  const seconds = secondsOf(pcm, 22050);
  t.comment(`微信收款十二点三四元: ${seconds.toFixed(2)} s of audio`);
  t.ok(seconds > 2 && seconds < 5, `${seconds} s`);
  t.equal(requests[0]!.device, 'plughw:CARD=Device,DEV=0');
  t.ok(requests[0]!.graceMs > 0, 'killed only some time after the end of its audio');
  t.match(log.lines.join('\n'), /<7>voice words=微信收款十二点三四元 device="plughw:CARD=Device,DEV=0"/);
});

t.test('the queue: in order, after the register line, once per event; failures said once per reason', async (t) => {
  const loaded = loadPack(builtInVoiceDir());
  if (!loaded.ok) return void t.fail(loaded.problems.join('\n'));
  const played: string[] = [];
  let fail: string | null = null;
  let release: () => void = () => undefined;
  const registerLine = new Promise<void>((resolve) => (release = resolve));
  const log = memoryLogger();
  const voice = new Announcer({
    settings: { device: 'hw:0', volume: 80, two: 'liang' },
    pack: loaded.pack,
    log,
    player: async (request) => (await request.pcm, fail ? { ok: false, reason: fail } : { ok: true }),
    onPlay: (words) => played.push(words),
  });
  voice.announce({ kind: 'password' }, { after: registerLine });
  voice.announce({ kind: 'paid', fen: 200 }, { event: 'sale:1:paid' });
  voice.announce({ kind: 'paid', fen: 200 }, { event: 'sale:1:paid' });
  await new Promise((resolve) => setImmediate(resolve));
  t.same(played, [], 'nothing before the register line is written');
  release();
  await voice.drained();
  t.same(played, ['请输入支付密码', '微信收款两元'], 'in order, the repeated event not again');
  fail = 'aplay: audio open error: Device or resource busy';
  voice.announce({ kind: 'offline' });
  voice.announce({ kind: 'given_back' });
  await voice.drained();
  const warnings = log.lines.filter((l) => l.startsWith('<4>'));
  t.equal(warnings.length, 1, 'one warning for two failures of one reason');
  t.match(warnings[0], /^<4>voice: not played; the light and buzzer still tell the result words=网络异常，请使用其他方式付款 device=hw:0 reason="aplay: audio open error: Device or resource busy"$/);
  fail = null;
  voice.announce({ kind: 'refunded', fen: 3000 });
  await voice.drained();
  t.match(log.lines.at(-1), /^<6>voice: the speaker plays again/);
});

t.test('silent box: the words are logged, nothing is played', async (t) => {
  const loaded = loadPack(builtInVoiceDir());
  if (!loaded.ok) return void t.fail(loaded.problems.join('\n'));
  let calls = 0;
  const log = memoryLogger();
  const voice = new Announcer({ settings: { device: null, volume: 80, two: 'er' }, pack: loaded.pack, log, player: async () => (calls++, { ok: true }) });
  voice.announce({ kind: 'paid', fen: 20000 });
  await voice.drained();
  t.equal(calls, 0);
  t.same(log.lines, ['<7>voice words=微信收款二百元 device=none']);
});
