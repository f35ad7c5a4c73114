/**
 * Makes the built-in voice pack (voice/ at the package root) from espeak-ng's Mandarin voice: one clip per token
 * of src/devices/voice/phrases.ts, trimmed of its leading and trailing silence and loudness-normalised, plus
 * manifest.json. Reproducible: the same espeak-ng (the `espeak-ng` npm package, a development dependency:
 * espeak-ng compiled to WebAssembly, no native code) writes the same clips.
 *
 *   npm run voice:make            (writes voice/)
 *   npm run voice:make -- DIR     (writes DIR, e.g. to compare)
 *
 * espeak-ng is never shipped or run on the box: the WAVs it made are committed and shipped.
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import ESpeakNg from 'espeak-ng';
import { MANIFEST } from '../../../src/devices/voice/pack.js';
import { PACK_TOKENS } from '../../../src/devices/voice/phrases.js';
import { encodeWav, parseWav } from '../../../src/devices/voice/wav.js';
import { packageRoot } from '../../../src/simulator/package-root.js';

/** ASCII file names (pinyin) for the clips. */
const FILES: Record<string, string> = {
  零: 'ling.wav',
  一: 'yi.wav',
  二: 'er.wav',
  两: 'liang.wav',
  三: 'san.wav',
  四: 'si.wav',
  五: 'wu.wav',
  六: 'liu.wav',
  七: 'qi.wav',
  八: 'ba.wav',
  九: 'jiu.wav',
  十: 'shi.wav',
  百: 'bai.wav',
  千: 'qian.wav',
  万: 'wan.wav',
  亿: 'yi4.wav',
  点: 'dian.wav',
  元: 'yuan.wav',
  微信收款: 'weixin-shoukuan.wav',
  请输入支付密码: 'qing-shuru-zhifu-mima.wav',
  支付失败: 'zhifu-shibai.wav',
  余额不足: 'yue-buzu.wav',
  付款码已过期: 'fukuanma-yi-guoqi.wav',
  付款码无效: 'fukuanma-wuxiao.wav',
  请出示微信付款码: 'qing-chushi-weixin-fukuanma.wav',
  支付超时: 'zhifu-chaoshi.wav',
  支付已撤销: 'zhifu-yi-chexiao.wav',
  退款成功: 'tuikuan-chenggong.wav',
  '网络异常，请使用其他方式付款': 'wangluo-yichang.wav',
  请付款: 'qing-fukuan.wav',
  语音测试: 'yuyin-ceshi.wav',
};

/** espeak-ng's words per minute: a little slower than its 175, as a cashier reads a sum. */
const SPEED = '165';
/** Below this a sample counts as silence when trimming (about -40 dBFS). */
const SILENCE = 330;
/** Kept either side of the voice so that consonants are not cut. */
const MARGIN_MS = { before: 10, after: 25 };
/** The loudness every clip is brought to: RMS of its voiced samples at -18 dBFS, peaks at most -1 dBFS. */
const TARGET_RMS = 32767 * 10 ** (-18 / 20);
const PEAK_LIMIT = 32767 * 10 ** (-1 / 20);

async function speak(text: string): Promise<Buffer> {
  const espeak = await ESpeakNg({ arguments: ['-v', 'cmn', '-s', SPEED, '-w', 'clip.wav', text] });
  return Buffer.from(espeak.FS.readFile('clip.wav'));
}

function trim(samples: Int16Array, rate: number): Int16Array {
  let first = 0;
  while (first < samples.length && Math.abs(samples[first]!) < SILENCE) first++;
  let last = samples.length - 1;
  while (last > first && Math.abs(samples[last]!) < SILENCE) last--;
  const from = Math.max(0, first - Math.round((MARGIN_MS.before * rate) / 1000));
  const to = Math.min(samples.length, last + 1 + Math.round((MARGIN_MS.after * rate) / 1000));
  return samples.slice(from, to);
}

function normalise(samples: Int16Array): Int16Array {
  let sum = 0;
  let voiced = 0;
  let peak = 1;
  for (const s of samples) {
    const a = Math.abs(s);
    if (a > peak) peak = a;
    if (a >= SILENCE) {
      sum += s * s;
      voiced++;
    }
  }
  const rms = Math.sqrt(sum / Math.max(1, voiced));
  const gain = Math.min(TARGET_RMS / rms, PEAK_LIMIT / peak);
  return samples.map((s) => Math.max(-32768, Math.min(32767, Math.round(s * gain))));
}

async function main(): Promise<void> {
  const out = resolve(process.argv[2] ?? join(packageRoot(), 'voice'));
  mkdirSync(out, { recursive: true });
  for (const name of readdirSync(out)) if (name.endsWith('.wav') || name === MANIFEST) rmSync(join(out, name));
  const clips: Record<string, string> = {};
  let total = 0;
  let seconds = 0;
  for (const token of PACK_TOKENS) {
    const file = FILES[token];
    if (!file) throw new Error(`no file name for token ${token}: add it to FILES`);
    const parsed = parseWav(await speak(token));
    if (!parsed.ok) throw new Error(`espeak-ng wrote a clip for ${token} that ${parsed.problem}`);
    const samples = normalise(trim(parsed.clip.samples, parsed.clip.rate));
    const wav = encodeWav(samples, parsed.clip.rate);
    writeFileSync(join(out, file), wav);
    clips[token] = file;
    total += wav.length;
    seconds += samples.length / parsed.clip.rate;
    process.stdout.write(`${token}\t${file}\t${(samples.length / parsed.clip.rate).toFixed(2)} s\n`);
  }
  const manifest = {
    name: 'espeak-ng cmn (built-in)',
    made: `test/tooling/voice/make.ts: espeak-ng -v cmn -s ${SPEED}, trimmed at -40 dBFS, RMS -18 dBFS, peak -1 dBFS`,
    license: 'clips synthesised with espeak-ng (GPL-3.0-or-later); synthesised output is not covered by its license',
    clips,
  };
  writeFileSync(join(out, MANIFEST), JSON.stringify(manifest, null, 2) + '\n');
  process.stdout.write(`${Object.keys(clips).length} clips, ${(total / 1024).toFixed(0)} KiB, ${seconds.toFixed(1)} s of audio in ${out}\n`);
}

await main();
