import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A stand-in `aplay` (voice.md, testing without a sound card): an executable named `aplay` put first on the
 * daemon's PATH, spawned exactly as the real one is, that records what it was given: its arguments and every
 * byte of its stdin, with the instant the first byte came. `STANDIN_APLAY_MODE=busy` makes it fail as a
 * speaker in use does (aplay's own words, exit 1) after reading nothing; `enoent`-like failures are tested by
 * leaving it off PATH.
 */

export interface Play {
  args: string[];
  device: string | undefined;
  rate: number;
  pcm: Buffer;
  /** performance.timeOrigin + performance.now() in the stand-in when its first byte came (ms). */
  firstByteAt: number;
  startedAt: number;
}

const SCRIPT = `
const { writeFileSync } = require('node:fs');
const { join } = require('node:path');
const startedAt = performance.timeOrigin + performance.now();
const dir = process.env.STANDIN_APLAY_DIR;
const name = String(startedAt.toFixed(3)).padStart(20, '0') + '-' + process.pid;
if (process.env.STANDIN_APLAY_MODE === 'busy') {
  process.stderr.write('aplay: main:831: audio open error: Device or resource busy\\n');
  process.exit(1);
}
const chunks = [];
let firstByteAt = null;
process.stdin.on('data', (chunk) => {
  if (firstByteAt === null) firstByteAt = performance.timeOrigin + performance.now();
  chunks.push(chunk);
});
process.stdin.on('end', () => {
  const pcm = Buffer.concat(chunks);
  writeFileSync(join(dir, name + '.pcm'), pcm);
  writeFileSync(join(dir, name + '.json'), JSON.stringify({ args: process.argv.slice(2), startedAt, firstByteAt }));
});
`;

export class StandInAplay {
  readonly bin: string;
  readonly records: string;

  constructor(dir: string) {
    this.bin = join(dir, 'bin');
    this.records = join(dir, 'plays');
    mkdirSync(this.bin, { recursive: true });
    mkdirSync(this.records, { recursive: true });
    const path = join(this.bin, 'aplay');
    writeFileSync(path, `#!${process.execPath}\n${SCRIPT}`);
    chmodSync(path, 0o755);
  }

  /** The daemon's environment: the stand-in first on PATH, and where it records. */
  env(mode: 'ok' | 'busy' = 'ok'): Record<string, string> {
    return { PATH: `${this.bin}:${process.env.PATH ?? '/usr/bin:/bin'}`, STANDIN_APLAY_DIR: this.records, STANDIN_APLAY_MODE: mode };
  }

  /** Every play recorded so far, oldest first. */
  plays(): Play[] {
    return readdirSync(this.records)
      .filter((name) => name.endsWith('.json'))
      .sort()
      .map((name) => {
        const meta = JSON.parse(readFileSync(join(this.records, name), 'utf8')) as { args: string[]; startedAt: number; firstByteAt: number };
        const at = meta.args.indexOf('-D');
        const rate = meta.args.indexOf('-r');
        return {
          args: meta.args,
          device: at >= 0 ? meta.args[at + 1] : undefined,
          rate: rate >= 0 ? Number(meta.args[rate + 1]) : NaN,
          pcm: readFileSync(join(this.records, name.replace(/\.json$/, '.pcm'))),
          firstByteAt: meta.firstByteAt,
          startedAt: meta.startedAt,
        };
      });
  }

  /** Waits until `count` plays are recorded (the stand-in writes its record when its stdin ends). */
  async waitFor(count: number, timeoutMs = 15000): Promise<Play[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const plays = this.plays();
      if (plays.length >= count) return plays;
      if (Date.now() > deadline) throw new Error(`${plays.length} play(s) recorded, ${count} expected within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}
