import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Duplex } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { packageRoot } from './package-root.js';

/**
 * Virtual serial ports for the demo and the end-to-end tests: scripts/ptypair.py makes pty pairs behind
 * symlinks, and this side talks to their masters as a cash register and a barcode scanner would.
 */

const HELPER = join(packageRoot(), 'scripts', 'ptypair.py');

/** The far end of one serial line: what the register or the scanner sends and receives. */
export class LineChannel {
  /** Every line received, in order, without its terminator. */
  readonly lines: string[] = [];
  /** Called with each line as it arrives (the demo prints them live). */
  onLine: ((line: string) => void) | null = null;
  /** Every byte received, as it came (a customer display's line is bytes, not lines). */
  private readonly chunks: Buffer[] = [];
  private buffer = '';
  private readonly decoder = new StringDecoder('utf8');
  private waiters: { test: (line: string) => boolean; from: number; resolve: (line: string) => void }[] = [];

  constructor(private readonly stream: Duplex) {
    stream.on('data', (data: Buffer) => {
      this.chunks.push(data);
      const chunk = this.decoder.write(data);
      this.buffer += chunk;
      let index: number;
      while ((index = this.buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = this.buffer.slice(0, index);
        const skip = this.buffer.startsWith('\r\n', index) ? 2 : 1;
        this.buffer = this.buffer.slice(index + skip);
        if (line === '') continue;
        this.lines.push(line);
        this.onLine?.(line);
        this.wake();
      }
    });
  }

  /** Every byte received so far. */
  get received(): Buffer {
    return Buffer.concat(this.chunks);
  }

  /** Sends raw bytes exactly as given (tests send noise and half lines too). */
  sendRaw(data: string | Buffer): void {
    this.stream.write(data);
  }

  /** Sends a line ended by CR LF. */
  send(line: string): void {
    this.stream.write(line + '\r\n');
  }

  /** How many lines have arrived so far; pass it to `next` to wait only for later lines. */
  get mark(): number {
    return this.lines.length;
  }

  /** The first line at or after `from` that matches, waiting up to `timeoutMs` for it. */
  next(match: RegExp | string | ((line: string) => boolean), timeoutMs = 10000, from = 0): Promise<string> {
    const test =
      typeof match === 'function' ? match : typeof match === 'string' ? (l: string) => l === match : (l: string) => match.test(l);
    const found = this.lines.slice(from).find(test);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const waiter = { test, from, resolve: (line: string) => {
        clearTimeout(timer);
        resolve(line);
      } };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`no line matching ${String(match)} within ${timeoutMs} ms; got: ${JSON.stringify(this.lines.slice(from))}`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  private wake(): void {
    const index = this.lines.length - 1;
    const line = this.lines[index]!;
    for (const waiter of [...this.waiters]) {
      if (index >= waiter.from && waiter.test(line)) {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        waiter.resolve(line);
      }
    }
  }
}

export class VirtualPorts {
  private replies: Record<string, unknown>[] = [];
  private replyWaiters: ((reply: Record<string, unknown>) => void)[] = [];

  private constructor(
    private readonly helper: ChildProcess,
    private readonly links: Record<string, string>,
    private readonly channels: Record<string, LineChannel>,
  ) {}

  /** Starts the helper with one virtual port per name, linked as `dir/name`. */
  static async start(dir: string, names: readonly string[]): Promise<VirtualPorts> {
    const stdio: ('pipe' | 'inherit')[] = ['pipe', 'pipe', 'inherit', ...names.map(() => 'pipe' as const)];
    const helper = spawn('python3', [HELPER, dir, ...names], { stdio });
    const lines = createInterface({ input: helper.stdout! });
    const first = await new Promise<Record<string, unknown>>((resolve, reject) => {
      lines.once('line', (line) => resolve(JSON.parse(line) as Record<string, unknown>));
      helper.once('error', reject);
      helper.once('exit', (code) => reject(new Error(`pty helper exited with code ${code}`)));
    });
    const ready = first.ready as Record<string, { link: string }>;
    const links: Record<string, string> = {};
    const channels: Record<string, LineChannel> = {};
    names.forEach((name, i) => {
      links[name] = ready[name]!.link;
      channels[name] = new LineChannel(helper.stdio[3 + i] as Duplex);
    });
    const ports = new VirtualPorts(helper, links, channels);
    lines.on('line', (line) => {
      const reply = JSON.parse(line) as Record<string, unknown>;
      const waiter = ports.replyWaiters.shift();
      if (waiter) waiter(reply);
      else ports.replies.push(reply);
    });
    return ports;
  }

  /** The path the daemon opens for this port (a symlink to the current pty). */
  path(name: string): string {
    const link = this.links[name];
    if (!link) throw new Error(`no virtual port ${name}`);
    return link;
  }

  channel(name: string): LineChannel {
    const channel = this.channels[name];
    if (!channel) throw new Error(`no virtual port ${name}`);
    return channel;
  }

  private command(line: string): Promise<Record<string, unknown>> {
    return new Promise((resolve) => {
      const queued = this.replies.shift();
      if (queued) return resolve(queued);
      this.replyWaiters.push(resolve);
      this.helper.stdin!.write(line + '\n');
    });
  }

  /** Unplugs a port: the daemon's reads fail and the link disappears. */
  async drop(name: string): Promise<void> {
    await this.command(`drop ${name}`);
  }

  /** Plugs the port back in behind the same link. */
  async restore(name: string): Promise<void> {
    await this.command(`restore ${name}`);
  }

  async close(): Promise<void> {
    if (this.helper.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.helper.once('exit', () => resolve()));
    this.helper.stdin!.end();
    this.helper.kill('SIGTERM');
    await exited;
  }
}
