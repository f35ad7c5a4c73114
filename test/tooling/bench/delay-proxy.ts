import net from 'node:net';

/**
 * A loopback TCP proxy that makes 127.0.0.1 look like a link across the country: every chunk, in each
 * direction, is handed on `oneWayMs` after it came in, in the order it came in; the end of a stream (FIN) and
 * a reset travel the same way behind the data. A new connection also costs the TCP handshake's round trip,
 * which loopback does not: what the client writes first leaves no earlier than `connectRttMs` after it
 * connected (a real client can only write once its SYN has been answered), then takes `oneWayMs` like
 * everything else. So with the defaults a round trip costs 60 ms, a new TCP + TLS 1.3 connection two more.
 *
 * Bench tooling: it listens on 127.0.0.1 only and forwards to 127.0.0.1:`targetPort`.
 */
export interface DelayProxyOptions {
  targetPort: number;
  /** Each direction, per chunk; default 30. */
  oneWayMs?: number;
  /** The TCP handshake's round trip; default 2 x oneWayMs. */
  connectRttMs?: number;
}

type Item = { at: number; data: Buffer; came: number } | { at: number; end: true } | { at: number; reset: true };

/** A chunk of data that went through: which way, when it came in and when it was handed on (performance.now()). */
export interface ChunkRecord {
  up: boolean;
  came: number;
  sent: number;
  bytes: number;
}

/** One direction of one connection: a queue of what came in, each item with the time it is to be handed on. */
class DelayedPipe {
  private readonly queue: Item[] = [];
  private timer: NodeJS.Timeout | null = null;
  private done = false;

  constructor(
    private readonly to: net.Socket,
    private readonly onSent: (came: number, sent: number, bytes: number) => void,
  ) {}

  push(item: Item): void {
    if (this.done) return;
    // Never before the item ahead of it: order is kept even if the clock or the holding rule would reorder.
    const last = this.queue[this.queue.length - 1];
    if (last && last.at > item.at) item.at = last.at;
    this.queue.push(item);
    this.schedule();
  }

  private schedule(): void {
    if (this.timer !== null || this.queue.length === 0) return;
    this.timer = setTimeout(() => this.flush(), Math.max(0, this.queue[0]!.at - performance.now()));
  }

  private flush(): void {
    this.timer = null;
    const now = performance.now();
    while (this.queue.length > 0 && this.queue[0]!.at <= now + 0.5) {
      const item = this.queue.shift()!;
      if (this.to.destroyed) {
        this.stop();
        return;
      }
      if ('data' in item) {
        this.to.write(item.data);
        this.onSent(item.came, performance.now(), item.data.length);
      }
      else if ('end' in item) this.to.end();
      else {
        this.to.resetAndDestroy();
        this.stop();
        return;
      }
    }
    this.schedule();
  }

  stop(): void {
    this.done = true;
    this.queue.length = 0;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}

export class DelayProxy {
  /** Both may be changed at any time (a warm-up at 0); chunks already queued keep their times. */
  oneWayMs: number;
  connectRttMs: number;
  /** performance.now() of every connection a client opened, oldest first. */
  readonly opened: number[] = [];
  /** Every chunk passed on, in the order it was, while `tracing` is on. */
  readonly chunks: ChunkRecord[] = [];
  tracing = false;
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
    options: DelayProxyOptions,
  ) {
    this.oneWayMs = options.oneWayMs ?? 30;
    this.connectRttMs = options.connectRttMs ?? 2 * this.oneWayMs;
    server.on('connection', (client) => this.accept(client, options.targetPort));
  }

  static async start(options: DelayProxyOptions): Promise<DelayProxy> {
    const server = net.createServer({ allowHalfOpen: true, noDelay: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new DelayProxy(server, (server.address() as net.AddressInfo).port, options);
  }

  /** Connections opened by clients at or after `from` and before `to` (performance.now()). */
  openedBetween(from: number, to: number): number {
    return this.opened.filter((at) => at >= from && at < to).length;
  }

  private accept(client: net.Socket, targetPort: number): void {
    const openedAt = performance.now();
    this.opened.push(openedAt);
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort, allowHalfOpen: true, noDelay: true });
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
    }
    const record = (up: boolean) => (came: number, sent: number, bytes: number): void => {
      if (this.tracing) this.chunks.push({ up, came, sent, bytes });
    };
    const up = new DelayedPipe(upstream, record(true));
    const down = new DelayedPipe(client, record(false));
    // Out of the client: not before the TCP handshake's round trip would have let it write.
    const upAt = (): number => Math.max(performance.now(), openedAt + this.connectRttMs) + this.oneWayMs;
    const downAt = (): number => performance.now() + this.oneWayMs;
    client.on('data', (data: Buffer) => up.push({ at: upAt(), data, came: performance.now() }));
    upstream.on('data', (data: Buffer) => down.push({ at: downAt(), data, came: performance.now() }));
    client.on('end', () => up.push({ at: upAt(), end: true }));
    upstream.on('end', () => down.push({ at: downAt(), end: true }));
    // A reset or an error on one side reaches the other after the same delay; a side that closed after both
    // ends were passed on is simply gone.
    const broken = (pipe: DelayedPipe, at: () => number) => (): void => pipe.push({ at: at(), reset: true });
    client.on('error', broken(up, upAt));
    upstream.on('error', broken(down, downAt));
    client.on('close', (hadError) => {
      if (!hadError && client.readableEnded && client.writableFinished) return;
      up.push({ at: upAt(), reset: true });
    });
    upstream.on('close', (hadError) => {
      if (!hadError && upstream.readableEnded && upstream.writableFinished) return;
      down.push({ at: downAt(), reset: true });
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A TCP echo server on 127.0.0.1, to time a round trip through a DelayProxy. */
export async function echoServer(): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Round trips of `size` bytes through `proxy` on one connection, after its connection is open (ms each). */
export async function roundTrips(proxy: DelayProxy, count: number, size = 200): Promise<number[]> {
  const socket = net.connect({ host: '127.0.0.1', port: proxy.port, noDelay: true });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  // Past the TCP handshake's hold on the first write.
  await new Promise((r) => setTimeout(r, proxy.connectRttMs + 5));
  const times: number[] = [];
  const payload = Buffer.alloc(size, 0x61);
  try {
    for (let i = 0; i < count; i++) {
      const started = performance.now();
      await new Promise<void>((resolve) => {
        let got = 0;
        const onData = (d: Buffer): void => {
          got += d.length;
          if (got >= size) {
            socket.off('data', onData);
            resolve();
          }
        };
        socket.on('data', onData);
        socket.write(payload);
      });
      times.push(performance.now() - started);
    }
  } finally {
    socket.destroy();
  }
  return times;
}
