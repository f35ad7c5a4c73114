import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { JOIN_DEFAULTS, joinClips } from '../../src/devices/voice/join.js';
import { builtInVoiceDir, loadPack } from '../../src/devices/voice/pack.js';
import { aplayArgs } from '../../src/devices/voice/player.js';
import { Rig } from '../../src/simulator/rig.js';
import { StandInAplay } from '../helpers/aplay.js';

/** `scanbox say`, the selftest's voice line and `config check` of a voice pack, as a technician runs them (dist/cli.js). */

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'cli.js');
const DEVICE = 'plughw:CARD=Test,DEV=0';
const cleanEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SCANBOX_') && k !== 'NODE_OPTIONS' && k !== 'CREDENTIALS_DIRECTORY') env[k] = v;
  return env;
};
const scanbox = (args: string[], env: NodeJS.ProcessEnv) => spawnSync(process.execPath, [CLI, ...args], { env: { ...cleanEnv(), ...env }, encoding: 'utf8', timeout: 60_000 });

const dir = mkdtempSync(join(tmpdir(), 'scanbox-say-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const loaded = loadPack(builtInVoiceDir());
if (!loaded.ok) throw new Error(loaded.problems.join('\n'));
const pack = loaded.pack;

t.test('scanbox say FEN --dry-run prints the words and the clips, plays nothing', async (t) => {
  const aplay = new StandInAplay(join(dir, 'dry'));
  const run = scanbox(['say', '1234', '--dry-run'], { ...aplay.env(), SCANBOX_AUDIO_DEVICE: DEVICE });
  t.equal(run.status, 0, run.stderr);
  t.equal(run.stdout, '微信收款十二点三四元\nclips: 微信收款 十 二 点 三 四 元\n');
  t.equal(aplay.plays().length, 0);
  const er = scanbox(['say', '20000', '--dry-run'], { SCANBOX_VOICE_TWO: 'er' });
  t.match(er.stdout, /^微信收款二百元\n/);
  t.match(scanbox(['say', '20000', '--dry-run'], {}).stdout, /^微信收款两百元\n/, '两 by default');
  t.match(scanbox(['say', '1'], {}).stdout, /^微信收款零点零一元\nclips: .*\nnot played: no speaker \(SCANBOX_AUDIO_DEVICE is not set\)\n$/);
});

t.test('scanbox say FEN plays it: one aplay, the exact PCM', async (t) => {
  const aplay = new StandInAplay(join(dir, 'play'));
  const run = scanbox(['say', '100100'], { ...aplay.env(), SCANBOX_AUDIO_DEVICE: DEVICE, SCANBOX_VOLUME: '50' });
  t.equal(run.status, 0, run.stdout + run.stderr);
  t.match(run.stdout, /^微信收款一千零一元\n.*\nplayed on plughw:CARD=Test,DEV=0: \d\.\d\d s at volume 50/s);
  const plays = aplay.plays();
  t.equal(plays.length, 1);
  t.same(plays[0]!.args, aplayArgs(DEVICE, 22050));
  const expected = joinClips(['微信收款', '一', '千', '零', '一', '元'].map((token) => pack.clips.get(token)!), { ...JOIN_DEFAULTS, rate: 22050, gain: 10 ** (-9 / 20) });
  t.ok(plays[0]!.pcm.equals(expected), 'the clips at -9 dB (volume 50)');
});

t.test('scanbox say: a busy speaker exits 1 with the reason; bad amounts exit 2', async (t) => {
  const aplay = new StandInAplay(join(dir, 'busy'));
  const busy = scanbox(['say', '1234'], { ...aplay.env('busy'), SCANBOX_AUDIO_DEVICE: DEVICE });
  t.equal(busy.status, 1);
  t.match(busy.stdout, /not played: aplay: main:831: audio open error: Device or resource busy \(the speaker is in use by another program\)/);
  for (const bad of [['0'], ['12.34'], ['1000000000'], ['-5'], []]) t.equal(scanbox(['say', ...bad], {}).status, 2, `say ${bad.join(' ')}`);
  const wrong = scanbox(['say', '100'], { SCANBOX_VOLUME: 'loud' });
  t.equal(wrong.status, 2);
  t.match(wrong.stdout, /^FAIL SCANBOX_VOLUME: "loud" is not a whole number 0\.\.100$/m);
});

t.test('a damaged voice pack: config check names it, run stops with exit 2, selftest FAILs voice', async (t) => {
  const rig = await Rig.start();
  t.teardown(() => rig.close());
  const broken = join(dir, 'broken-pack');
  cpSync(builtInVoiceDir(), broken, { recursive: true });
  rmSync(join(broken, 'qi.wav'));
  const env = { ...rig.env, SCANBOX_AUDIO_DEVICE: DEVICE, SCANBOX_VOICE_DIR: broken };
  const check = scanbox(['config', 'check'], env);
  t.equal(check.status, 2);
  t.match(check.stdout, new RegExp(`^FAIL SCANBOX_VOICE_DIR: token 七: ${join(broken, 'qi.wav')} does not exist$`, 'm'));
  const { daemon } = rig.spawnDaemon({ env: { SCANBOX_AUDIO_DEVICE: DEVICE, SCANBOX_VOICE_DIR: broken } });
  t.equal(await daemon.closed, 2);
  t.ok(daemon.lines.some((l) => l.startsWith('<3>configuration: SCANBOX_VOICE_DIR: token 七')));
  const selftest = scanbox(['selftest'], env);
  t.match(selftest.stdout, /^FAIL voice: SCANBOX_VOICE_DIR: token 七: .* does not exist$/m);

  const good = scanbox(['config', 'check'], { ...rig.env, SCANBOX_AUDIO_DEVICE: DEVICE });
  t.equal(good.status, 0, good.stdout);
  t.match(good.stdout, /^SCANBOX_AUDIO_DEVICE=plughw:CARD=Test,DEV=0$/m);
  t.match(good.stdout, /^SCANBOX_VOICE_DIR=unset \(the built-in voice\) \(espeak-ng cmn \(built-in\): 31 clips, 22050 Hz, \d+ KiB\)$/m);
});

t.test('selftest plays a short phrase on the speaker: PASS, or FAIL with the reason', async (t) => {
  const rig = await Rig.start();
  t.teardown(() => rig.close());
  const aplay = new StandInAplay(join(dir, 'selftest'));
  const pass = scanbox(['selftest'], { ...rig.env, ...aplay.env(), SCANBOX_AUDIO_DEVICE: DEVICE });
  t.match(pass.stdout, /^PASS voice: plughw:CARD=Test,DEV=0: played 语音测试 \(\d\.\d s, espeak-ng cmn \(built-in\), volume 80\): listen$/m, pass.stdout);
  const plays = aplay.plays();
  t.equal(plays.length, 1);
  t.ok(plays[0]!.pcm.equals(joinClips([pack.clips.get('语音测试')!], { ...JOIN_DEFAULTS, rate: 22050, gain: 1 })));
  const busy = new StandInAplay(join(dir, 'selftest-busy'));
  const fail = scanbox(['selftest'], { ...rig.env, ...busy.env('busy'), SCANBOX_AUDIO_DEVICE: DEVICE });
  t.match(fail.stdout, /^FAIL voice: plughw:CARD=Test,DEV=0: aplay: main:831: audio open error: Device or resource busy/m);
  t.equal(fail.status, 1);
  const silent = scanbox(['selftest'], rig.env);
  t.match(silent.stdout, /^PASS voice: no speaker configured \(SCANBOX_AUDIO_DEVICE unset\): the box is silent$/m);
});
