import { isAbsolute } from 'node:path';
import { builtInVoiceDir, loadPack, type VoicePack } from '../devices/voice/pack.js';
import { TWO_READINGS, type TwoReading } from '../devices/voice/reading.js';

/**
 * The voice's variables (contract §2, §9): SCANBOX_AUDIO_DEVICE, SCANBOX_VOLUME, SCANBOX_VOICE_DIR and
 * SCANBOX_VOICE_TWO. Read apart from the rest of the box's configuration and fed into the one frozen Config
 * (config.ts), every error reported with the others as `NAME: what is wrong`.
 *
 * The voice pack is loaded and checked here, so that `scanbox run` stops at start (exit 2) and `scanbox config
 * check` names what is wrong with it (a missing token, a wrong rate, a file that is not WAV): a box whose
 * speaker would play noise or nothing is found at installation, not at the first sale.
 */

export interface VoiceConfig {
  /** SCANBOX_AUDIO_DEVICE: the ALSA device of the speaker; null: the box is silent. */
  device: string | null;
  /** SCANBOX_VOLUME, 0-100 (default 80). */
  volume: number;
  /** SCANBOX_VOICE_TWO: 两 (`liang`, default) or 二 (`er`) for a leading 2 before 百/千/万/亿 and 元. */
  two: TwoReading;
  /** SCANBOX_VOICE_DIR; null: the built-in voice. */
  dir: string | null;
  /** The loaded, checked pack; null when the box is silent and no SCANBOX_VOICE_DIR is set (nothing to play). */
  pack: VoicePack | null;
}

export const VOICE_VARIABLES: readonly string[] = ['SCANBOX_AUDIO_DEVICE', 'SCANBOX_VOLUME', 'SCANBOX_VOICE_DIR', 'SCANBOX_VOICE_TWO'];

export const DEFAULT_VOLUME = 80;

export interface VoiceReader {
  /** The value, or undefined when unset or empty. */
  get(name: string): string | undefined;
  error(name: string, text: string): void;
  readFile?: (path: string) => Buffer;
}

const DEVICE = /^[A-Za-z0-9_:=,.\-/]{1,128}$/;

export function readVoiceConfig(r: VoiceReader): VoiceConfig {
  let device: string | null = null;
  const deviceRaw = r.get('SCANBOX_AUDIO_DEVICE');
  if (deviceRaw !== undefined) {
    if (!DEVICE.test(deviceRaw)) {
      r.error('SCANBOX_AUDIO_DEVICE', `${JSON.stringify(deviceRaw.slice(0, 80))} is not an ALSA device name (e.g. plughw:CARD=Device,DEV=0; aplay -L lists them)`);
    } else {
      device = deviceRaw;
    }
  }

  let volume = DEFAULT_VOLUME;
  const volumeRaw = r.get('SCANBOX_VOLUME');
  if (volumeRaw !== undefined) {
    if (!/^[0-9]{1,3}$/.test(volumeRaw) || Number(volumeRaw) > 100) r.error('SCANBOX_VOLUME', `${JSON.stringify(volumeRaw.slice(0, 20))} is not a whole number 0..100`);
    else volume = Number(volumeRaw);
  }

  let two: TwoReading = 'liang';
  const twoRaw = r.get('SCANBOX_VOICE_TWO');
  if (twoRaw !== undefined) {
    if ((TWO_READINGS as readonly string[]).includes(twoRaw)) two = twoRaw as TwoReading;
    else r.error('SCANBOX_VOICE_TWO', `${JSON.stringify(twoRaw.slice(0, 20))} is not liang (两百, 两千, 两元) or er (二百, 二千, 二元)`);
  }

  let dir: string | null = null;
  const dirRaw = r.get('SCANBOX_VOICE_DIR');
  if (dirRaw !== undefined) {
    if (!isAbsolute(dirRaw) || /[\u0000-\u001f]/.test(dirRaw)) r.error('SCANBOX_VOICE_DIR', `${JSON.stringify(dirRaw.slice(0, 80))} is not an absolute path`);
    else dir = dirRaw;
  }

  let pack: VoicePack | null = null;
  if (device !== null || dir !== null) {
    const from = dir ?? builtInVoiceDir();
    const loaded = loadPack(from, r.readFile);
    if (loaded.ok) pack = loaded.pack;
    else {
      const whose = dir === null ? 'unset, and the built-in voice is damaged (reinstall scanbox): ' : '';
      for (const problem of loaded.problems) r.error('SCANBOX_VOICE_DIR', `${whose}${problem}`);
    }
  }
  return { device, volume, two, dir, pack };
}

/** `NAME=value` lines for `scanbox config check`. */
export function describeVoice(voice: VoiceConfig): string[] {
  const pack = voice.pack
    ? ` (${voice.pack.name}: ${voice.pack.clips.size} clips, ${voice.pack.rate} Hz, ${Math.round(voice.pack.bytes / 1024)} KiB)`
    : '';
  return [
    `SCANBOX_AUDIO_DEVICE=${voice.device ?? 'unset (the box is silent)'}`,
    `SCANBOX_VOLUME=${voice.volume}`,
    `SCANBOX_VOICE_DIR=${voice.dir ?? 'unset (the built-in voice)'}${pack}`,
    `SCANBOX_VOICE_TWO=${voice.two}`,
  ];
}
