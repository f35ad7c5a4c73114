import { readVoiceConfig } from '../config/voice.js';
import { Announcer } from '../devices/voice/announcer.js';
import { tokensOf } from '../devices/voice/phrases.js';
import { aplayPlayer, type Player } from '../devices/voice/player.js';
import { MAX_READ_FEN } from '../devices/voice/reading.js';
import { createLogger } from '../log.js';

const USAGE = `usage: scanbox say FEN [--dry-run]   the words the box speaks for a payment of FEN (1..${MAX_READ_FEN}), played on SCANBOX_AUDIO_DEVICE`;

/**
 * `scanbox say FEN [--dry-run]` (contract §1, §9): prints what the box says for a payment of FEN and plays it on
 * the configured speaker; with `--dry-run`, or without a speaker, it prints only. Only the voice's variables are
 * read, so it works on a box whose payment configuration is not finished yet.
 *
 * Exit codes: 0 said (or printed), 1 the speaker could not play it, 2 usage or a voice variable wrong.
 */
export async function sayCommand(args: string[], env: NodeJS.ProcessEnv = process.env, player: Player = aplayPlayer): Promise<number> {
  const dryRun = args.includes('--dry-run');
  const rest = args.filter((arg) => arg !== '--dry-run');
  if (rest.length !== 1 || !/^[0-9]{1,9}$/.test(rest[0]!) || Number(rest[0]) < 1) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const fen = Number(rest[0]);
  const errors: string[] = [];
  const voice = readVoiceConfig({ get: (name) => (env[name] === '' ? undefined : env[name]), error: (name, text) => errors.push(`${name}: ${text}`) });
  if (errors.length > 0) {
    for (const error of errors) process.stdout.write(`FAIL ${error}\n`);
    return 2;
  }
  const announcer = new Announcer({
    settings: { device: voice.device, volume: voice.volume, two: voice.two },
    pack: voice.pack,
    log: createLogger({ level: 'warning' }),
    player,
  });
  const announcement = { kind: 'paid', fen } as const;
  process.stdout.write(`${announcer.words(announcement)}\n`);
  process.stdout.write(`clips: ${tokensOf(announcement, voice.two).join(' ')}\n`);
  if (dryRun) return 0;
  if (voice.device === null) {
    process.stdout.write('not played: no speaker (SCANBOX_AUDIO_DEVICE is not set)\n');
    return 0;
  }
  const played = await announcer.playNow(announcement);
  if (!played.ok) {
    process.stdout.write(`not played: ${played.reason}\n`);
    return 1;
  }
  process.stdout.write(`played on ${voice.device}: ${played.seconds.toFixed(2)} s at volume ${voice.volume} (${voice.pack?.name})\n`);
  return 0;
}
