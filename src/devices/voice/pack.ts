import { readFileSync } from 'node:fs';
import { basename, isAbsolute, join, normalize } from 'node:path';
import { errnoOf } from '../../errors.js';
import { packageRoot } from '../../simulator/package-root.js';
import { PACK_TOKENS } from './phrases.js';
import { parseWav } from './wav.js';

/**
 * A voice pack: a folder of WAV clips and `manifest.json` naming the clip of each token (every amount clip
 * and every phrase of phrases.ts). The built-in pack (voice/ in the package, made by test/tooling/voice/) is
 * espeak-ng's Mandarin; SCANBOX_VOICE_DIR replaces it with recorded clips. A pack is checked whole when it is
 * loaded: every token has a clip, each clip is a 16-bit PCM mono WAV, all at one rate.
 *
 * manifest.json: `{ "name": "...", "clips": { "微信收款": "weixin-shoukuan.wav", "零": "ling.wav", ... } }`
 */

export interface VoicePack {
  dir: string;
  name: string;
  rate: number;
  clips: ReadonlyMap<string, Int16Array>;
  /** Bytes of audio held in memory. */
  bytes: number;
}

export type LoadedPack = { ok: true; pack: VoicePack } | { ok: false; problems: string[] };

export const MANIFEST = 'manifest.json';

/** The voice that ships with the package: <package root>/voice. */
export function builtInVoiceDir(): string {
  return join(packageRoot(), 'voice');
}

function readProblem(error: unknown): string {
  const code = errnoOf(error);
  if (code === 'ENOENT' || code === 'ENOTDIR') return 'does not exist';
  if (code === 'EACCES' || code === 'EPERM') return `is not readable by this user (${code})`;
  if (code === 'EISDIR') return 'is a directory, not a file';
  return `cannot be read (${typeof code === 'string' ? code : (error as Error).message})`;
}

/** Loads and checks the pack in `dir`; every problem at once, each naming the token or file. */
export function loadPack(dir: string, readFile: (path: string) => Buffer = (path) => readFileSync(path)): LoadedPack {
  const manifestPath = join(dir, MANIFEST);
  let manifest: unknown;
  try {
    manifest = JSON.parse(readFile(manifestPath).toString('utf8'));
  } catch (error) {
    if (error instanceof SyntaxError) return { ok: false, problems: [`${manifestPath} is not JSON (${error.message})`] };
    return { ok: false, problems: [`${manifestPath} ${readProblem(error)}${errnoOf(error) === 'ENOENT' ? ': a voice folder needs a manifest naming the clip of each token' : ''}`] };
  }
  const clipsField = typeof manifest === 'object' && manifest !== null ? (manifest as { clips?: unknown }).clips : undefined;
  if (typeof clipsField !== 'object' || clipsField === null || Array.isArray(clipsField)) {
    return { ok: false, problems: [`${manifestPath} has no "clips" object (token -> WAV file name)`] };
  }
  const named = clipsField as Record<string, unknown>;
  const nameField = (manifest as { name?: unknown }).name;
  const problems: string[] = [];
  const clips = new Map<string, Int16Array>();
  const rates = new Map<number, string[]>();
  let bytes = 0;
  for (const token of PACK_TOKENS) {
    const file = named[token];
    if (file === undefined) {
      problems.push(`missing token ${token}: ${manifestPath} names no clip for it`);
      continue;
    }
    if (typeof file !== 'string' || file === '' || isAbsolute(file) || normalize(file).startsWith('..') || basename(file) !== file) {
      problems.push(`token ${token}: ${JSON.stringify(file)} is not a file name inside the voice folder`);
      continue;
    }
    const path = join(dir, file);
    let data: Buffer;
    try {
      data = readFile(path);
    } catch (error) {
      problems.push(`token ${token}: ${path} ${readProblem(error)}`);
      continue;
    }
    const parsed = parseWav(data);
    if (!parsed.ok) {
      problems.push(`token ${token}: ${path} ${parsed.problem}`);
      continue;
    }
    clips.set(token, parsed.clip.samples);
    bytes += parsed.clip.samples.byteLength;
    const at = rates.get(parsed.clip.rate) ?? [];
    at.push(file);
    rates.set(parsed.clip.rate, at);
  }
  if (rates.size > 1) {
    // The rate most clips have is taken as the pack's; the others are named.
    const [common] = [...rates].sort((a, b) => b[1].length - a[1].length)[0]!;
    for (const [rate, files] of rates) {
      if (rate === common) continue;
      problems.push(`wrong rate: ${files.join(', ')} ${files.length === 1 ? 'is' : 'are'} ${rate} Hz, the other clips ${common} Hz: one rate for every clip`);
    }
  }
  if (problems.length > 0) return { ok: false, problems };
  const rate = [...rates.keys()][0]!;
  return { ok: true, pack: { dir, name: typeof nameField === 'string' ? nameField : basename(dir), rate, clips, bytes } };
}
