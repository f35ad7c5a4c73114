/**
 * One announcement's PCM, joined in Node: silence first (an audio device clips or pops its first 0.1-0.2 s),
 * the clips with short gaps, a little silence at the end, and the volume as a gain on the samples (mixer
 * controls differ from card to card; a MAX98357A has none).
 */

export interface JoinOptions {
  rate: number;
  leadMs: number;
  gapMs: number;
  tailMs: number;
  /** Linear gain; samples pushed past full scale are held there (clipped), never wrapped. */
  gain: number;
}

export const JOIN_DEFAULTS: Omit<JoinOptions, 'rate' | 'gain'> = { leadMs: 120, gapMs: 50, tailMs: 100 };

const samplesOf = (ms: number, rate: number): number => Math.round((ms * rate) / 1000);

/**
 * A clip as signed 16-bit little-endian PCM at `gain`; samples pushed past full scale are held there (clipped),
 * never wrapped. The announcer does this once per clip when it starts, so that joining an announcement is only
 * copying bytes: an interpreted loop over 80,000 samples costs tens of ms before the JIT has warmed up, and a
 * counter box announces a few hundred times a day.
 */
export function pcmOf(clip: Int16Array, gain: number): Buffer {
  const out = Buffer.alloc(clip.length * 2);
  for (let s = 0; s < clip.length; s++) {
    let value = Math.round(clip[s]! * gain);
    if (value > 32767) value = 32767;
    else if (value < -32768) value = -32768;
    out.writeInt16LE(value, s * 2);
  }
  return out;
}

/** Clips already as PCM (pcmOf), joined: silence first, the gaps, silence after. */
export function joinPcm(clips: readonly Buffer[], options: Omit<JoinOptions, 'gain'>): Buffer {
  const lead = samplesOf(options.leadMs, options.rate) * 2;
  const gap = samplesOf(options.gapMs, options.rate) * 2;
  const tail = samplesOf(options.tailMs, options.rate) * 2;
  let total = lead + tail;
  clips.forEach((clip, i) => (total += clip.length + (i > 0 ? gap : 0)));
  const out = Buffer.alloc(total);
  let at = lead;
  clips.forEach((clip, i) => {
    if (i > 0) at += gap;
    at += clip.copy(out, at);
  });
  return out;
}

/** Signed 16-bit little-endian mono PCM, what `aplay -t raw -f S16_LE -c 1` reads. */
export function joinClips(clips: readonly Int16Array[], options: JoinOptions): Buffer {
  return joinPcm(
    clips.map((clip) => pcmOf(clip, options.gain)),
    options,
  );
}

/**
 * SCANBOX_VOLUME (0-100) as a gain: 80 plays the clips as the pack has them (they are loudness-normalised when
 * made); each step is 0.3 dB, so 100 is +6 dB (a noisy shop; peaks may clip) and 50 is -9 dB. 0 is silence.
 */
export function gainOf(volume: number): number {
  if (volume <= 0) return 0;
  return 10 ** (((volume - 80) * 0.3) / 20);
}

/** Seconds of audio in `pcm` at `rate`. */
export function secondsOf(pcm: Buffer, rate: number): number {
  return pcm.length / 2 / rate;
}
