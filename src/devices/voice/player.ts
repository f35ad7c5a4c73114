import { spawn } from 'node:child_process';

/**
 * One `aplay` per announcement, the joined PCM on its stdin: ALSA directly (a systemd service has no
 * PipeWire/PulseAudio session: `default` fails with "Host is down" until someone logs in), on the configured
 * device by card name, e.g. `plughw:CARD=Device,DEV=0` (plughw converts the rate; card numbers move between
 * boots).
 */

export interface PlayRequest {
  device: string;
  rate: number;
  /**
   * The announcement's PCM, or the promise of it: the player is started at once (spawning aplay and opening the
   * device take tens of ms on a Pi) and given the sound once the register line is written.
   */
  pcm: Buffer | Promise<Buffer>;
  /** Killed this long after the end of its audio: a device that hangs must not hold the queue. */
  graceMs: number;
}

/** How a play ended; `reason` is in words a technician can act on. */
export type Played = { ok: true } | { ok: false; reason: string };

export type Player = (request: PlayRequest) => Promise<Played>;

/** The arguments aplay is given (tests' stand-in aplay records them). */
export function aplayArgs(device: string, rate: number): string[] {
  return ['-q', '-D', device, '-t', 'raw', '-f', 'S16_LE', '-c', '1', '-r', String(rate), '-'];
}

/** What aplay's error line means at the counter. */
function explain(stderr: string, code: number | null, signal: NodeJS.Signals | null): string {
  const line = stderr.trim().split('\n').filter((l) => l.trim() !== '').pop()?.trim() ?? '';
  const said = line === '' ? `aplay exited with ${code === null ? `signal ${signal}` : `code ${code}`}` : line.startsWith('aplay:') ? line.slice(0, 200) : `aplay: ${line.slice(0, 200)}`;
  if (/busy/i.test(line)) return `${said} (the speaker is in use by another program)`;
  if (/No such (file|device)|cannot find card|Unknown PCM|Invalid (CTL|card)/i.test(line)) {
    return `${said} (no such sound device: check SCANBOX_AUDIO_DEVICE against aplay -L)`;
  }
  return said;
}

/** The real player: `aplay` from PATH (alsa-utils). */
export const aplayPlayer: Player = (request) =>
  new Promise<Played>((resolve) => {
    let settled = false;
    const done = (played: Played): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(played);
    };
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    const child = spawn('aplay', aplayArgs(request.device, request.rate), { stdio: ['pipe', 'ignore', 'pipe'] });
    child.on('error', (error: NodeJS.ErrnoException) => {
      done({
        ok: false,
        reason: error.code === 'ENOENT' ? 'aplay not found: install alsa-utils (apt-get install alsa-utils)' : `aplay could not be started (${error.code ?? error.message})`,
      });
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      if (stderr.length < 4096) stderr += chunk;
    });
    // aplay that dies early closes its stdin: EPIPE here is told by its exit code and stderr instead.
    child.stdin.on('error', () => undefined);
    child.on('close', (code, signal) => {
      if (code === 0) done({ ok: true });
      else done({ ok: false, reason: explain(stderr, code, signal) });
    });
    Promise.resolve(request.pcm).then(
      (pcm) => {
        if (settled) return;
        const timeoutMs = Math.ceil((pcm.length / 2 / request.rate) * 1000) + request.graceMs;
        timer = setTimeout(() => {
          child.kill('SIGKILL');
          done({ ok: false, reason: `aplay did not finish within ${timeoutMs} ms: killed (the device may be stuck)` });
        }, timeoutMs);
        child.stdin.end(pcm);
      },
      (error: unknown) => {
        child.kill('SIGKILL');
        done({ ok: false, reason: (error as Error).message });
      },
    );
  });
