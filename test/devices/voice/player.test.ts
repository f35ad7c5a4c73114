import t from 'tap';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { aplayPlayer } from '../../../src/devices/voice/player.js';

/** The real player against stand-in aplay programs: a hang is killed, a missing aplay and an error are told. */

const dir = mkdtempSync(join(tmpdir(), 'scanbox-player-'));
const savedPath = process.env.PATH;
t.teardown(() => {
  process.env.PATH = savedPath;
  rmSync(dir, { recursive: true, force: true });
});

function withAplay(name: string, script: string): void {
  const bin = join(dir, name);
  rmSync(bin, { recursive: true, force: true });
  mkdirSync(bin, { recursive: true });
  writeFileSync(join(bin, 'aplay'), `#!/bin/sh\n${script}\n`);
  chmodSync(join(bin, 'aplay'), 0o755);
  process.env.PATH = `${bin}:${savedPath}`;
}

const pcm = Buffer.alloc(20); // 10 samples at 1000 Hz: 10 ms of audio

t.test('a player that hangs is killed after its audio and the grace', async (t) => {
  withAplay('hang', 'exec sleep 30');
  const started = Date.now();
  const played = await aplayPlayer({ device: 'hw:0', rate: 1000, pcm, graceMs: 200 });
  t.same(played, { ok: false, reason: 'aplay did not finish within 210 ms: killed (the device may be stuck)' });
  t.ok(Date.now() - started < 5000, 'not left hanging');
});

t.test('the grace counts from the sound, not from the start: the player may wait for the register line', async (t) => {
  withAplay('ok', 'exec cat > /dev/null');
  let release: (b: Buffer) => void = () => undefined;
  const later = new Promise<Buffer>((resolve) => (release = resolve));
  const playing = aplayPlayer({ device: 'hw:0', rate: 1000, pcm: later, graceMs: 100 });
  await new Promise((resolve) => setTimeout(resolve, 300));
  release(pcm);
  t.same(await playing, { ok: true });
});

t.test('aplay missing, a busy device, a wrong name: each reason in words', async (t) => {
  process.env.PATH = join(dir, 'nothing-here');
  t.same(await aplayPlayer({ device: 'hw:0', rate: 1000, pcm, graceMs: 100 }), { ok: false, reason: 'aplay not found: install alsa-utils (apt-get install alsa-utils)' });
  withAplay('busy', 'cat > /dev/null; echo "aplay: main:831: audio open error: Device or resource busy" >&2; exit 1');
  t.same(await aplayPlayer({ device: 'hw:0', rate: 1000, pcm, graceMs: 100 }), {
    ok: false,
    reason: 'aplay: main:831: audio open error: Device or resource busy (the speaker is in use by another program)',
  });
  withAplay('name', 'echo "ALSA lib pcm.c:2666:(snd_pcm_open_noupdate) Unknown PCM plughw:CARD=Nope,DEV=0" >&2; echo "aplay: main:831: audio open error: No such file or directory" >&2; exit 1');
  t.match(await aplayPlayer({ device: 'plughw:CARD=Nope,DEV=0', rate: 1000, pcm, graceMs: 100 }), {
    ok: false,
    reason: /No such file or directory \(no such sound device: check SCANBOX_AUDIO_DEVICE against aplay -L\)$/,
  });
  withAplay('signal', 'kill -9 $$');
  t.match(await aplayPlayer({ device: 'hw:0', rate: 1000, pcm, graceMs: 100 }), { ok: false, reason: /^aplay exited with signal SIGKILL$/ });
});
