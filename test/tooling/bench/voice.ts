import { spawnSync } from 'node:child_process';
import { chmodSync, constants, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { JOIN_DEFAULTS, joinClips } from '../../../src/devices/voice/join.js';
import { builtInVoiceDir, loadPack } from '../../../src/devices/voice/pack.js';
import { tokensOf } from '../../../src/devices/voice/phrases.js';
import { Rig } from '../../../src/simulator/rig.js';
import { paymentCode } from '../../../src/simulator/scenarios.js';
import { quantile, type Row } from './common.js';

/**
 * The voice (contract §9): how soon the payer hears the result, and what the voice pack costs in memory.
 *
 * - PAID line -> the announcement's first byte at the player: the daemon (built, on its ptys, against the
 *   simulator) with SCANBOX_AUDIO_DEVICE set and a stand-in `aplay` first on its PATH: `#!/bin/sh` that execs
 *   `cat` into a FIFO this process reads, so the stand-in costs what a small C program costs to start (not a
 *   Node start-up, which would be most of the figure). Timed in this process, one clock: from the PAID line
 *   read from the register pty to the first bytes read from the FIFO, one sale at a time, the next sale only
 *   once the whole announcement (its exact length) has arrived. The voice waits for the register line's write
 *   by design, so the figure is the queue, the join of the PCM and the spawn of the player. A real aplay then
 *   opens the sound device: tens of ms more on a Pi, not measured here (no sound card).
 * - Private memory with the pack loaded: smaps_rollup's Anonymous of that daemon (as the sales part measures
 *   it) after the sales, against the 40 MB target.
 */

const SALES = Number(process.env.BENCH_VOICE_SALES ?? 200);
const WARMUP = 20;
const AMOUNT = 1234;

function privateMb(pid: number): number {
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  return Number(/^Anonymous:\s+(\d+) kB/m.exec(rollup)?.[1] ?? NaN) / 1024;
}

/** Bytes arriving on a FIFO, with the instant each chunk was read. */
class FifoReader {
  private chunks: { at: number; bytes: number }[] = [];
  private waiter: { need: number; resolve: () => void } | null = null;
  private total = 0;

  constructor(path: string) {
    // O_RDWR: the FIFO never reaches EOF between one stand-in and the next. A socket on the fd (a pipe handle,
    // polled), not a file stream, whose blocking read would hold a thread and keep the process from exiting.
    const stream = new Socket({ fd: openSync(path, constants.O_RDWR | constants.O_NONBLOCK), readable: true, writable: false });
    stream.on('data', (chunk: Buffer | string) => {
      const at = performance.now();
      this.chunks.push({ at, bytes: chunk.length });
      this.total += chunk.length;
      if (this.waiter && this.total >= this.waiter.need) {
        const w = this.waiter;
        this.waiter = null;
        w.resolve();
      }
    });
    this.stream = stream;
  }

  private readonly stream: Socket;

  /** Waits for `bytes` more than had arrived at `from`; the instant the first of them came. */
  async next(from: number, bytes: number, timeoutMs = 10_000): Promise<number> {
    if (this.total < from + bytes) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the player got ${this.total - from} of ${bytes} bytes within ${timeoutMs} ms`)), timeoutMs);
        this.waiter = { need: from + bytes, resolve: () => (clearTimeout(timer), resolve()) };
      });
    }
    let seen = 0;
    for (const chunk of this.chunks) {
      if (seen + chunk.bytes > from) return chunk.at;
      seen += chunk.bytes;
    }
    throw new Error('no chunk');
  }

  get received(): number {
    return this.total;
  }

  close(): void {
    this.stream.destroy();
  }
}

export async function voicePhase(progress: (text: string) => void): Promise<{ rows: Row[]; conditions: string }> {
  const loaded = loadPack(builtInVoiceDir());
  if (!loaded.ok) throw new Error(loaded.problems.join('\n'));
  const pack = loaded.pack;
  const tokens = tokensOf({ kind: 'paid', fen: AMOUNT });
  const length = joinClips(tokens.map((token) => pack.clips.get(token)!), { ...JOIN_DEFAULTS, rate: pack.rate, gain: 1 }).length;

  const rig = await Rig.start({ env: { SCANBOX_LOG_LEVEL: 'info', SCANBOX_AUDIO_DEVICE: 'plughw:CARD=Bench,DEV=0' } });
  const fifo = join(rig.dir, 'player.fifo');
  const made = spawnSync('mkfifo', [fifo]);
  if (made.status !== 0) throw new Error(`mkfifo failed: ${made.stderr}`);
  const bin = join(rig.dir, 'bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'aplay'), `#!/bin/sh\nexec cat > '${fifo}'\n`);
  chmodSync(join(bin, 'aplay'), 0o755);
  const reader = new FifoReader(fifo);
  try {
    const daemon = await rig.startDaemon({ PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}` });
    const pid = daemon.process.pid!;
    const delays: number[] = [];
    for (let i = 0; i < WARMUP + SALES; i++) {
      const ref = `VB${i}`;
      const from = rig.register.mark;
      rig.register.send(`PAY ${AMOUNT} ${ref}`);
      await rig.register.next(`ACK ${ref}`, 5000, from);
      const before = reader.received;
      rig.scanner.send(paymentCode(700_000_000 + i));
      const paid = await rig.register.next(new RegExp(`^(PAID|FAILED) ${ref} `), 10_000, from);
      const paidAt = performance.now();
      if (!paid.startsWith('PAID')) throw new Error(`sale ${ref}: ${paid}`);
      const firstByte = await reader.next(before, length);
      if (i >= WARMUP) delays.push(firstByte - paidAt);
    }
    const memory = privateMb(pid);
    const words = tokens.join('');
    progress(`voice: ${SALES} sales, each announcing ${words} (${length} bytes, ${(length / 2 / pack.rate).toFixed(2)} s)`);
    const p50 = quantile(delays, 0.5);
    const p99 = quantile(delays, 0.99);
    const code = await rig.stopDaemon();
    if (code !== 0) throw new Error(`the daemon stopped with exit code ${code}`);
    const fmt = (v: number, d = 1): string => v.toFixed(d);
    return {
      rows: [
        {
          metric: `voice: PAID line read -> announcement's first byte at the player, p50 / p99 (${SALES} sales)`,
          value: `${fmt(p50, 2)} / ${fmt(p99, 2)} ms`,
          target: 'p99 <= 50 ms',
          ok: p99 <= 50,
        },
        { metric: 'voice: length of the announcement 微信收款十二点三四元', value: `${fmt(length / 2 / pack.rate, 2)} s`, target: '-', ok: null },
        {
          metric: `voice: private memory with the pack loaded (${Math.round(pack.bytes / 1024)} KiB of clips), after ${WARMUP + SALES} sales`,
          value: `${fmt(memory)} MB`,
          target: '<= 40 MB',
          ok: memory <= 40,
        },
      ],
      conditions: `voice: a stand-in aplay (sh exec cat into a FIFO read by the bench), ${WARMUP} warm-up + ${SALES} measured sales of ${AMOUNT} fen`,
    };
  } finally {
    reader.close();
    await rig.close();
  }
}
