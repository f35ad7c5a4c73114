import t from 'tap';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { builtInVoiceDir, loadPack, MANIFEST } from '../../../src/devices/voice/pack.js';
import { PACK_TOKENS, PHRASES } from '../../../src/devices/voice/phrases.js';
import { AMOUNT_TOKENS } from '../../../src/devices/voice/reading.js';
import { encodeWav, parseWav } from '../../../src/devices/voice/wav.js';
import { readVoiceConfig } from '../../../src/config/voice.js';

/** The built-in voice pack, a recorded one in its place (SCANBOX_VOICE_DIR), and each way a pack is refused. */

const root = mkdtempSync(join(tmpdir(), 'scanbox-pack-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

/** A copy of the built-in pack to damage. */
function copy(): string {
  const dir = join(root, `pack${++n}`);
  cpSync(builtInVoiceDir(), dir, { recursive: true });
  return dir;
}

function manifestOf(dir: string): { clips: Record<string, string> } {
  return JSON.parse(readFileSync(join(dir, MANIFEST), 'utf8'));
}

t.test('the built-in pack has a checked clip for every token, all 16-bit mono at one rate', async (t) => {
  const loaded = loadPack(builtInVoiceDir());
  if (!loaded.ok) return void t.fail(loaded.problems.join('\n'));
  t.equal(loaded.pack.rate, 22050);
  t.equal(loaded.pack.clips.size, PACK_TOKENS.length);
  for (const token of [...AMOUNT_TOKENS, ...Object.values(PHRASES)]) t.ok(loaded.pack.clips.get(token)?.length, token);
  // Trimmed: espeak's 350 ms of trailing silence is gone; a syllable is well under half a second.
  for (const token of AMOUNT_TOKENS) t.ok(loaded.pack.clips.get(token)!.length / 22050 < 0.5, `${token} trimmed`);
  // Normalised (RMS -18 dBFS, peaks limited to -1 dBFS): every clip peaks between -12 and -1 dBFS.
  for (const [token, clip] of loaded.pack.clips) {
    let peak = 0;
    for (const s of clip) peak = Math.max(peak, Math.abs(s));
    t.ok(peak > 8200 && peak <= 29205, `${token} peak ${peak}`);
  }
  t.ok(loaded.pack.bytes < 2_000_000, `small: ${loaded.pack.bytes} bytes`);
});

t.test('a recorded pack replaces it: any rate, one for all', async (t) => {
  const dir = join(root, 'recorded');
  cpSync(builtInVoiceDir(), dir, { recursive: true });
  const clips: Record<string, string> = {};
  PACK_TOKENS.forEach((token, i) => {
    clips[token] = `clip${i}.wav`;
    writeFileSync(join(dir, `clip${i}.wav`), encodeWav(Int16Array.from([i, -i, 1000]), 16000));
  });
  writeFileSync(join(dir, MANIFEST), JSON.stringify({ name: 'shop voice', clips }));
  const loaded = loadPack(dir);
  if (!loaded.ok) return void t.fail(loaded.problems.join('\n'));
  t.equal(loaded.pack.name, 'shop voice');
  t.equal(loaded.pack.rate, 16000);
  t.same([...loaded.pack.clips.get(PHRASES.paid)!], [PACK_TOKENS.indexOf(PHRASES.paid), -PACK_TOKENS.indexOf(PHRASES.paid), 1000]);
});

t.test('a missing token is named', async (t) => {
  const dir = copy();
  const manifest = manifestOf(dir);
  delete manifest.clips['七'];
  delete manifest.clips[PHRASES.refunded];
  writeFileSync(join(dir, MANIFEST), JSON.stringify(manifest));
  const loaded = loadPack(dir);
  t.notOk(loaded.ok);
  if (loaded.ok) return;
  t.equal(loaded.problems.length, 2);
  t.match(loaded.problems[0], /^missing token 七: .*manifest\.json names no clip for it$/);
  t.match(loaded.problems[1], /^missing token 退款成功: /);
});

t.test('a clip file that is gone is named with its token', async (t) => {
  const dir = copy();
  rmSync(join(dir, 'san.wav'));
  const loaded = loadPack(dir);
  t.same(loaded.ok ? [] : loaded.problems, [`token 三: ${join(dir, 'san.wav')} does not exist`]);
});

t.test('a wrong rate is named: one rate for every clip', async (t) => {
  const dir = copy();
  writeFileSync(join(dir, 'wu.wav'), encodeWav(new Int16Array(800), 44100));
  const loaded = loadPack(dir);
  t.same(loaded.ok ? [] : loaded.problems, ['wrong rate: wu.wav is 44100 Hz, the other clips 22050 Hz: one rate for every clip']);
});

t.test('a non-WAV file, a stereo file, an 8-bit file, a float file are refused, each with what to do', async (t) => {
  const dir = copy();
  writeFileSync(join(dir, 'ba.wav'), Buffer.from('ID3\u0003 an mp3 renamed to .wav ........'));
  const stereo = encodeWav(new Int16Array(800), 22050);
  stereo.writeUInt16LE(2, 22);
  writeFileSync(join(dir, 'jiu.wav'), stereo);
  const eightBit = encodeWav(new Int16Array(800), 22050);
  eightBit.writeUInt16LE(8, 34);
  writeFileSync(join(dir, 'liu.wav'), eightBit);
  const float = encodeWav(new Int16Array(800), 22050);
  float.writeUInt16LE(3, 20);
  writeFileSync(join(dir, 'qi.wav'), float);
  const loaded = loadPack(dir);
  t.same(loaded.ok ? [] : loaded.problems, [
    `token 六: ${join(dir, 'liu.wav')} is 8-bit: save it as 16-bit PCM WAV`,
    `token 七: ${join(dir, 'qi.wav')} is not PCM (format 3): save it as 16-bit PCM WAV`,
    `token 八: ${join(dir, 'ba.wav')} is not a WAV file (no RIFF/WAVE header)`,
    `token 九: ${join(dir, 'jiu.wav')} has 2 channels: save it as mono`,
  ]);
});

t.test('a folder without a manifest, a manifest that is not JSON, a file name outside the folder', async (t) => {
  const empty = join(root, 'empty');
  cpSync(builtInVoiceDir(), empty, { recursive: true });
  rmSync(join(empty, MANIFEST));
  const none = loadPack(empty);
  t.match(none.ok ? '' : none.problems.join('\n'), /manifest\.json does not exist: a voice folder needs a manifest/);
  const dir = copy();
  writeFileSync(join(dir, MANIFEST), '{ "clips": ');
  const bad = loadPack(dir);
  t.match(bad.ok ? '' : bad.problems.join('\n'), /manifest\.json is not JSON/);
  const escape = copy();
  const manifest = manifestOf(escape);
  manifest.clips['一'] = '../../etc/passwd';
  writeFileSync(join(escape, MANIFEST), JSON.stringify(manifest));
  const outside = loadPack(escape);
  t.same(outside.ok ? [] : outside.problems, ['token 一: "../../etc/passwd" is not a file name inside the voice folder']);
});

t.test('parseWav reads what encodeWav writes, and skips chunks it does not know', async (t) => {
  const wav = encodeWav(Int16Array.from([0, 1, -1, 32767, -32768]), 22050);
  const withList = Buffer.concat([wav.subarray(0, 36), Buffer.from('LIST'), Buffer.from([4, 0, 0, 0]), Buffer.from('INFO'), wav.subarray(36)]);
  for (const bytes of [wav, withList]) {
    const parsed = parseWav(bytes);
    t.ok(parsed.ok);
    if (parsed.ok) t.same([...parsed.clip.samples], [0, 1, -1, 32767, -32768]);
  }
});

t.test('the voice configuration: config check and run name what is wrong', async (t) => {
  const read = (env: Record<string, string>) => {
    const errors: string[] = [];
    const voice = readVoiceConfig({ get: (name) => env[name] || undefined, error: (name, text) => errors.push(`${name}: ${text}`) });
    return { voice, errors };
  };
  const silent = read({});
  t.same(silent.errors, []);
  t.same({ ...silent.voice }, { device: null, volume: 80, two: 'liang', dir: null, pack: null }, 'silent: no pack is loaded');
  const speaking = read({ SCANBOX_AUDIO_DEVICE: 'plughw:CARD=Device,DEV=0', SCANBOX_VOLUME: '65', SCANBOX_VOICE_TWO: 'er' });
  t.same(speaking.errors, []);
  t.equal(speaking.voice.pack?.clips.size, PACK_TOKENS.length, 'the built-in pack with a speaker');
  t.equal(speaking.voice.two, 'er');
  const dir = copy();
  rmSync(join(dir, 'san.wav'));
  const wrong = read({ SCANBOX_AUDIO_DEVICE: 'bad device', SCANBOX_VOLUME: '101', SCANBOX_VOICE_TWO: '2', SCANBOX_VOICE_DIR: dir });
  t.same(wrong.errors, [
    'SCANBOX_AUDIO_DEVICE: "bad device" is not an ALSA device name (e.g. plughw:CARD=Device,DEV=0; aplay -L lists them)',
    'SCANBOX_VOLUME: "101" is not a whole number 0..100',
    'SCANBOX_VOICE_TWO: "2" is not liang (两百, 两千, 两元) or er (二百, 二千, 二元)',
    `SCANBOX_VOICE_DIR: token 三: ${join(dir, 'san.wav')} does not exist`,
  ]);
  t.same(read({ SCANBOX_VOICE_DIR: 'voice' }).errors, ['SCANBOX_VOICE_DIR: "voice" is not an absolute path']);
});
