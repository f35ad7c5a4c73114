import type { Logger } from '../../log.js';
import { JOIN_DEFAULTS, gainOf, joinPcm, pcmOf } from './join.js';
import type { VoicePack } from './pack.js';
import { tokensOf, type Announcement } from './phrases.js';
import { aplayPlayer, type Player } from './player.js';
import type { TwoReading } from './reading.js';

/**
 * The box's voice (contract §9): one queue of announcements, played one after another, none dropped, none
 * twice. `announce` returns at once: the register line and the journal never wait for the speaker. An
 * announcement given `after` (the register line's write) starts only once that has settled, so the box
 * speaks after the register has been told.
 */

export interface VoiceSettings {
  /** SCANBOX_AUDIO_DEVICE; null: silent (each announcement is still logged at debug, as the demo shows it). */
  device: string | null;
  /** SCANBOX_VOLUME, 0-100. */
  volume: number;
  two: TwoReading;
}

export interface AnnounceOptions {
  /** Played only once this has settled (the register line that says the same). */
  after?: Promise<unknown>;
  /** The event this announces (e.g. `sale:17:paid`): an event already announced is not announced again. */
  event?: string;
}

/** What box.ts and any other part of the box speaks through. */
export interface Voice {
  announce(announcement: Announcement, options?: AnnounceOptions): void;
}

/** A box without a voice. */
export const silentVoice: Voice = { announce: () => undefined };

/** How many announced events are remembered against a repeat. */
const REMEMBERED = 256;
/** A player gets the length of its audio and this much more before it is killed. */
const KILL_AFTER_MS = 5000;

export interface AnnouncerOptions {
  settings: VoiceSettings;
  /** Null only for a silent box (no SCANBOX_AUDIO_DEVICE): the words are still known and logged. */
  pack: VoicePack | null;
  log: Logger;
  player?: Player;
  /** Told when an announcement's PCM is handed to the player (the bench times it). */
  onPlay?: (words: string) => void;
}

export class Announcer implements Voice {
  private queue: Promise<void> = Promise.resolve();
  /** Announcements queued and not finished: with none, the next one's player is started at once. */
  private pending = 0;
  private readonly announced = new Set<string>();
  /** The last failure's reason: said once at warning, then at debug until a play succeeds. */
  private failing: string | null = null;
  private readonly player: Player;
  /** Each clip as PCM at the configured volume, made once: an announcement is then joined by copying bytes. */
  private readonly pcm = new Map<string, Buffer>();

  constructor(private readonly o: AnnouncerOptions) {
    this.player = o.player ?? aplayPlayer;
    const gain = gainOf(o.settings.volume);
    if (o.pack && o.settings.device !== null) for (const [token, clip] of o.pack.clips) this.pcm.set(token, pcmOf(clip, gain));
  }

  /** The words of an announcement (also for `scanbox say` and the demo). */
  words(announcement: Announcement): string {
    return tokensOf(announcement, this.o.settings.two).join('');
  }

  /** The joined PCM of an announcement at the configured volume. */
  pcmOf(announcement: Announcement): Buffer {
    const pack = this.o.pack;
    if (pack === null) throw new Error('no voice pack loaded');
    const gain = gainOf(this.o.settings.volume);
    const clips = tokensOf(announcement, this.o.settings.two).map((token) => {
      const made = this.pcm.get(token);
      if (made) return made;
      const clip = pack.clips.get(token);
      // A loaded pack has every token (pack.ts checks it).
      if (!clip) throw new Error(`voice pack ${pack.dir} has no clip for ${token}`);
      return pcmOf(clip, gain);
    });
    return joinPcm(clips, { ...JOIN_DEFAULTS, rate: pack.rate });
  }

  announce(announcement: Announcement, options: AnnounceOptions = {}): void {
    if (options.event !== undefined) {
      if (this.announced.has(options.event)) {
        this.o.log.debug('voice: already announced, not again', { event: options.event });
        return;
      }
      this.announced.add(options.event);
      if (this.announced.size > REMEMBERED) this.announced.delete(this.announced.values().next().value!);
    }
    const after = (options.after ?? Promise.resolve()).then(noop, noop);
    // With nothing playing, the player starts now, while the register line is still being written (a UART at
    // 9600 baud takes about 60 ms for a PAID line); it gets the sound only once the line is out. Behind another
    // announcement it starts when that one has finished: two players would fight over the device.
    const now = this.pending === 0 ? this.play(announcement, after) : null;
    this.pending++;
    this.queue = this.queue
      .then(() => now ?? this.play(announcement, after))
      .finally(() => {
        this.pending--;
      });
  }

  /** Resolves once everything announced so far has been played (or has failed). */
  async drained(): Promise<void> {
    let seen: Promise<void>;
    do {
      seen = this.queue;
      await seen;
    } while (seen !== this.queue);
  }

  /** Plays one announcement now, outside the queue (selftest, `scanbox say`); the reason when it failed. */
  async playNow(announcement: Announcement): Promise<{ ok: true; words: string; seconds: number } | { ok: false; words: string; reason: string }> {
    const words = this.words(announcement);
    const device = this.o.settings.device;
    if (device === null || this.o.pack === null) return { ok: false, words, reason: 'no speaker: SCANBOX_AUDIO_DEVICE is not set' };
    return this.playAfter(announcement, words, device, Promise.resolve());
  }

  private async playAfter(
    announcement: Announcement,
    words: string,
    device: string,
    after: Promise<void>,
  ): Promise<{ ok: true; words: string; seconds: number } | { ok: false; words: string; reason: string }> {
    const rate = this.o.pack!.rate;
    let seconds = 0;
    const pcm = after.then(() => {
      const joined = this.pcmOf(announcement);
      seconds = joined.length / 2 / rate;
      this.o.onPlay?.(words);
      return joined;
    });
    const played = await this.player({ device, rate, pcm, graceMs: KILL_AFTER_MS });
    return played.ok ? { ok: true, words, seconds } : { ok: false, words, reason: played.reason };
  }

  private async play(announcement: Announcement, after: Promise<void>): Promise<void> {
    let words: string;
    try {
      words = this.words(announcement);
    } catch (error) {
      await after;
      this.o.log.warning('voice: nothing said', { reason: (error as Error).message });
      return;
    }
    const device = this.o.settings.device;
    const said = after.then(() => this.o.log.debug('voice', { words, device: device ?? 'none' }));
    if (device === null || this.o.pack === null || this.o.settings.volume === 0) return said;
    let result: Awaited<ReturnType<Announcer['playNow']>>;
    try {
      result = await this.playAfter(announcement, words, device, said);
    } catch (error) {
      result = { ok: false, words, reason: (error as Error).message };
    }
    if (result.ok) {
      if (this.failing !== null) this.o.log.info('voice: the speaker plays again', { device });
      this.failing = null;
      return;
    }
    // Once at warning per reason: a missing speaker must not fill the log one line per sale.
    if (this.failing === result.reason) {
      this.o.log.debug('voice: not played', { words, reason: result.reason });
    } else {
      this.o.log.warning('voice: not played; the light and buzzer still tell the result', { words, device, reason: result.reason });
    }
    this.failing = result.reason;
  }
}

function noop(): void {}
