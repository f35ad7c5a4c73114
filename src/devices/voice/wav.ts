/**
 * The one audio format the box plays: RIFF/WAVE, PCM, 16-bit, mono. `aplay` plays random bytes as noise and
 * exits 0, so every clip is checked here, when a voice pack is loaded, never left to the player.
 */

export interface Clip {
  rate: number;
  /** Signed 16-bit samples. */
  samples: Int16Array;
}

export type ParsedWav = { ok: true; clip: Clip } | { ok: false; problem: string };

const WAVE_FORMAT_PCM = 1;
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;

/** Reads a WAV file's bytes; a problem in words a technician can act on when it is not one the box can play. */
export function parseWav(bytes: Buffer): ParsedWav {
  if (bytes.length < 12 || bytes.toString('latin1', 0, 4) !== 'RIFF' || bytes.toString('latin1', 8, 12) !== 'WAVE') {
    return { ok: false, problem: 'is not a WAV file (no RIFF/WAVE header)' };
  }
  let format: { tag: number; channels: number; rate: number; bits: number } | null = null;
  let data: Buffer | null = null;
  let at = 12;
  while (at + 8 <= bytes.length) {
    const id = bytes.toString('latin1', at, at + 4);
    const size = bytes.readUInt32LE(at + 4);
    const body = at + 8;
    // A streaming writer may leave the size of the last chunk unfinished (0 or 0xFFFFFFFF): take what is there.
    const end = Math.min(bytes.length, body + size);
    if (id === 'fmt ') {
      if (end - body < 16) return { ok: false, problem: 'has a damaged format chunk' };
      let tag = bytes.readUInt16LE(body);
      if (tag === WAVE_FORMAT_EXTENSIBLE && end - body >= 26) tag = bytes.readUInt16LE(body + 24);
      format = { tag, channels: bytes.readUInt16LE(body + 2), rate: bytes.readUInt32LE(body + 4), bits: bytes.readUInt16LE(body + 14) };
    } else if (id === 'data') {
      data = bytes.subarray(body, end);
      break;
    }
    at = body + size + (size % 2);
  }
  if (format === null) return { ok: false, problem: 'is not a WAV file the box can read (no format chunk)' };
  if (format.tag !== WAVE_FORMAT_PCM) return { ok: false, problem: `is not PCM (format ${format.tag}): save it as 16-bit PCM WAV` };
  if (format.bits !== 16) return { ok: false, problem: `is ${format.bits}-bit: save it as 16-bit PCM WAV` };
  if (format.channels !== 1) return { ok: false, problem: `has ${format.channels} channels: save it as mono` };
  if (format.rate < 8000 || format.rate > 48000) return { ok: false, problem: `has a sample rate of ${format.rate} Hz: use 8000..48000 Hz` };
  if (data === null) return { ok: false, problem: 'has no audio (no data chunk)' };
  const count = Math.floor(data.length / 2);
  if (count === 0) return { ok: false, problem: 'has no audio (an empty data chunk)' };
  const samples = new Int16Array(count);
  for (let i = 0; i < count; i++) samples[i] = data.readInt16LE(i * 2);
  return { ok: true, clip: { rate: format.rate, samples } };
}

/** A 16-bit mono PCM WAV file of `samples` (the voice pack's maker writes its clips with it; tests too). */
export function encodeWav(samples: Int16Array, rate: number): Buffer {
  const out = Buffer.alloc(44 + samples.length * 2);
  out.write('RIFF', 0, 'latin1');
  out.writeUInt32LE(36 + samples.length * 2, 4);
  out.write('WAVE', 8, 'latin1');
  out.write('fmt ', 12, 'latin1');
  out.writeUInt32LE(16, 16);
  out.writeUInt16LE(WAVE_FORMAT_PCM, 20);
  out.writeUInt16LE(1, 22);
  out.writeUInt32LE(rate, 24);
  out.writeUInt32LE(rate * 2, 28);
  out.writeUInt16LE(2, 32);
  out.writeUInt16LE(16, 34);
  out.write('data', 36, 'latin1');
  out.writeUInt32LE(samples.length * 2, 40);
  for (let i = 0; i < samples.length; i++) out.writeInt16LE(samples[i]!, 44 + i * 2);
  return out;
}
