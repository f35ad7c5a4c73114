/**
 * The daemon's control socket: how `scanbox status` learns the live health and how `scanbox reverse` gets
 * a manual reversal done by the daemon's own engine, so the daemon and a technician's command never
 * reverse the same sale at once.
 *
 * A Unix domain socket (mode 0660, in systemd's RuntimeDirectory), newline-delimited JSON: one request
 * line, one answer line, then the daemon closes. Requests: `{"cmd":"health"}` answered with the health
 * (`{"kind":"READY"}`, `{"kind":"BUSY","ref":"R1"}`, ...), `{"cmd":"refund","ref":"R1","amount_fen":500,"rid":"T1"}`
 * answered with `{"ok":..,"state":..,"line":..,"text":..}` (the refund's register line), and `{"cmd":"reverse","out_trade_no":"..."}`
 * answered with `{"ok":..,"state":..,"code":..,"text":..}`. Anything wrong is answered `{"error":"..."}`.
 * A client can never stop the daemon: every failure stays on its own connection.
 */
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { errnoOf, messageOf } from './errors.js';
import type { Health } from './health.js';
import { OUT_TRADE_NO, OUT_TRADE_NO_RULE, REF, REF_RULE } from './ids.js';
import type { Sale } from './journal/journal.js';
import type { Refund } from './journal/refunds.js';
import { refundAccepted } from './journal/states.js';
import type { Logger } from './log.js';

export interface ReverseAnswer {
  ok: boolean;
  /** The sale's journal state after the attempt; `unknown` when there is no such sale. */
  state: string;
  code: string | null;
  text: string;
}

export interface ControlHandlers {
  health(): Health;
  /** Manual reversal through the daemon's own engine, so the daemon and the command never race. */
  reverse(outTradeNo: string): Promise<ReverseAnswer>;
  /** A technician's refund through the daemon's own refund engine and journal. */
  refund?(request: RefundRequest): Promise<RefundAnswer>;
  /** The customer-display line as the daemon reads it (`scanbox display`): entries after `since`. */
  display?(since: number): Record<string, unknown>;
}

export interface RefundRequest {
  ref: string;
  amountFen: number;
  rid: string;
}

export interface RefundAnswer {
  /** WeChat Pay accepted it (now or before). */
  ok: boolean;
  /** The refund's journal state; `none` when nothing was recorded (refused before any request). */
  state: string;
  /** What the register would hear: `REFUNDED ...`, `FAILED RID CODE TEXT` or `PENDING RID`. */
  line: string;
  text: string;
}

/** Longest request line; a longer one is refused and the connection closed. */
export const MAX_REQUEST_BYTES = 4096;
/** A client that connects and says nothing is dropped after this. */
const REQUEST_TIMEOUT_MS = 5000;
/** Answers are a few hundred bytes; anything far larger is not the daemon talking. */
const MAX_ANSWER_BYTES = 65536;
const MAX_CLIENTS = 16;
export const DEFAULT_CONTROL_SOCKET = '/run/scanbox/control.sock';

/** `$RUNTIME_DIRECTORY/control.sock` (systemd's RuntimeDirectory=, the first when several), else /run/scanbox. */
export function controlSocketPath(env: NodeJS.ProcessEnv): string {
  const runtime = env.RUNTIME_DIRECTORY?.split(':')[0];
  if (runtime !== undefined && runtime.startsWith('/')) return join(runtime, 'control.sock');
  return DEFAULT_CONTROL_SOCKET;
}

/** The engine's manual reversal result as the socket answers it. */
export function reverseAnswer(result: { ok: boolean; sale: Sale | null; text: string }): ReverseAnswer {
  return {
    ok: result.ok,
    state: result.sale?.state ?? 'unknown',
    code: result.sale?.finalCode ?? null,
    text: result.text,
  };
}

/** The refund engine's answer to a technician, as the socket answers it. */
export function refundAnswer(result: { refund: Refund | null; line: string; text: string }): RefundAnswer {
  return {
    ok: result.refund !== null && refundAccepted(result.refund.state),
    state: result.refund?.state ?? 'none',
    line: result.line,
    text: result.text,
  };
}

export type ControlErrorCode = 'DENIED' | 'TIMEOUT' | 'BAD_ANSWER' | 'IN_USE' | 'NOT_A_SOCKET' | 'IO';

export class ControlError extends Error {
  constructor(
    readonly code: ControlErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ControlError';
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Whether something accepts connections on `path` (a second daemon); a refused connect means a stale file. */
function answersOn(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(path);
    const done = (live: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(live);
    };
    // A listener whose backlog is full is still a listener.
    const timer = setTimeout(() => done(true), 1000);
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** A socket file left by a daemon that was killed is removed; anything else at the path is not touched. */
async function clearStale(path: string): Promise<void> {
  let stat;
  try {
    stat = lstatSync(path);
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return;
    throw new ControlError('IO', `control socket ${path}: ${messageOf(error)}`, { cause: error });
  }
  if (!stat.isSocket()) {
    throw new ControlError('NOT_A_SOCKET', `control socket ${path} exists and is not a socket: not removing it`);
  }
  if (await answersOn(path)) {
    throw new ControlError('IN_USE', `another process already listens on the control socket ${path} (a second scanbox run?)`);
  }
  try {
    unlinkSync(path);
  } catch (error) {
    if (errnoOf(error) !== 'ENOENT') throw new ControlError('IO', `cannot remove the stale control socket ${path}: ${messageOf(error)}`, { cause: error });
  }
}

export class ControlServer {
  private readonly clients = new Set<net.Socket>();
  /** Requests being handled (a reversal takes seconds), answered or not yet. */
  private readonly pending = new Set<Promise<void>>();
  private closing: Promise<void> | null = null;

  private constructor(
    readonly path: string,
    private readonly server: net.Server,
    private readonly handlers: ControlHandlers,
    private readonly log: Logger,
  ) {
    server.on('connection', (socket) => this.serve(socket));
    server.on('error', (error) => log.error('control socket failed', { socket: path, error: messageOf(error) }));
  }

  static async listen(path: string, handlers: ControlHandlers, log: Logger): Promise<ControlServer> {
    await clearStale(path);
    // allowHalfOpen: a client that writes its request and then shuts its side down still gets the answer.
    const server = net.createServer({ allowHalfOpen: true });
    server.maxConnections = MAX_CLIENTS;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    }).catch((error: unknown) => {
      throw new ControlError(errnoOf(error) === 'EACCES' ? 'DENIED' : 'IO', `cannot listen on the control socket ${path}: ${messageOf(error)}`, {
        cause: error,
      });
    });
    const control = new ControlServer(path, server, handlers, log);
    try {
      // The umask left group and others without write (connect) permission; the group is the technicians'.
      chmodSync(path, 0o660);
    } catch (error) {
      await control.close();
      throw new ControlError('IO', `cannot set the mode of the control socket ${path}: ${messageOf(error)}`, { cause: error });
    }
    log.info('control socket listening', { socket: path });
    return control;
  }

  /**
   * Stops accepting, gives requests under way up to `graceMs` to be answered (a technician then hears how
   * the reversal went), drops the rest and removes the socket file. A reversal whose client is dropped goes
   * on in the engine, and its journal row tells the outcome.
   */
  close(graceMs = 0): Promise<void> {
    this.closing ??= (async () => {
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      if (graceMs > 0 && this.pending.size > 0) {
        let timer: NodeJS.Timeout | undefined;
        const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
        await Promise.race([Promise.allSettled([...this.pending]), grace]);
        clearTimeout(timer);
      }
      for (const socket of this.clients) socket.destroy();
      await closed;
      try {
        unlinkSync(this.path);
      } catch {
        // libuv removes the file itself on close.
      }
    })();
    return this.closing;
  }

  private serve(socket: net.Socket): void {
    this.clients.add(socket);
    let buffer = Buffer.alloc(0);
    let taken = false;
    const answer = (reply: Record<string, unknown>): void => {
      if (socket.destroyed || !socket.writable) return;
      // Closed once flushed, whether or not the client shuts its side: a silent client holds no slot.
      socket.end(JSON.stringify(reply) + '\n', () => socket.destroy());
    };
    socket.on('close', () => this.clients.delete(socket));
    socket.on('error', (error) => this.log.debug('control client error', { error: messageOf(error) }));
    socket.setTimeout(REQUEST_TIMEOUT_MS, () => {
      if (taken) return;
      taken = true;
      answer({ error: `no request line within ${REQUEST_TIMEOUT_MS / 1000} s` });
    });
    const take = (line: string): void => {
      taken = true;
      socket.setTimeout(0);
      // Nothing more is read: one request per connection.
      socket.removeAllListeners('data');
      socket.resume();
      const handled = this.handle(line.replace(/\r$/, '')).then(answer, (error: unknown) => {
        this.log.error('control request failed', { error: messageOf(error) });
        answer({ error: messageOf(error) });
      });
      this.pending.add(handled);
      void handled.finally(() => this.pending.delete(handled));
    };
    socket.on('data', (chunk: Buffer) => {
      if (taken) return;
      buffer = Buffer.concat([buffer, chunk]);
      const newline = buffer.indexOf(0x0a);
      if (newline > MAX_REQUEST_BYTES || (newline === -1 && buffer.length > MAX_REQUEST_BYTES)) {
        taken = true;
        this.log.warning('control request refused: line too long', { bytes: buffer.length });
        answer({ error: `request line longer than ${MAX_REQUEST_BYTES} bytes` });
        socket.removeAllListeners('data');
        socket.resume();
        return;
      }
      if (newline !== -1) take(buffer.subarray(0, newline).toString('utf8'));
    });
    socket.on('end', () => {
      if (taken) return;
      // The client shut its side after a request without a newline: that is still one request.
      if (buffer.length > 0) take(buffer.toString('utf8'));
      else {
        taken = true;
        socket.end();
      }
    });
  }

  private async handle(line: string): Promise<Record<string, unknown>> {
    let request: unknown;
    try {
      request = JSON.parse(line);
    } catch {
      return { error: 'request is not JSON (expected {"cmd":"health"} or {"cmd":"reverse","out_trade_no":"..."})' };
    }
    if (!isRecord(request) || typeof request.cmd !== 'string') {
      return { error: 'request must be a JSON object with a "cmd" string' };
    }
    switch (request.cmd) {
      case 'health':
        return { ...this.handlers.health() };
      case 'reverse': {
        const outTradeNo = request.out_trade_no;
        if (typeof outTradeNo !== 'string' || !OUT_TRADE_NO.test(outTradeNo)) {
          return { error: `reverse needs "out_trade_no": ${OUT_TRADE_NO_RULE}` };
        }
        this.log.info('control socket: reversal asked for', { out_trade_no: outTradeNo });
        return { ...(await this.handlers.reverse(outTradeNo)) };
      }
      case 'refund': {
        const { ref, amount_fen: amountFen, rid } = request;
        if (typeof ref !== 'string' || !REF.test(ref)) return { error: `refund needs "ref": ${REF_RULE}` };
        if (typeof rid !== 'string' || !REF.test(rid)) return { error: `refund needs "rid": ${REF_RULE.replace('REF', 'RID')}` };
        if (typeof amountFen !== 'number' || !Number.isSafeInteger(amountFen) || amountFen <= 0) {
          return { error: 'refund needs "amount_fen": a whole number of fen > 0' };
        }
        if (!this.handlers.refund) return { error: 'this daemon takes no refunds' };
        this.log.info('control socket: refund asked for', { ref, rid, amount_fen: amountFen });
        return { ...(await this.handlers.refund({ ref, amountFen, rid })) };
      }
      case 'display': {
        const since = request.since ?? 0;
        if (typeof since !== 'number' || !Number.isSafeInteger(since) || since < 0) return { error: 'display takes "since": a whole number >= 0' };
        if (!this.handlers.display) return { error: 'this daemon reads no customer-display line (SCANBOX_DISPLAY_PORT is not set)' };
        return { ...this.handlers.display(since) };
      }
      default:
        return { error: `unknown cmd ${JSON.stringify(request.cmd.slice(0, 40))}: expected health, display, refund or reverse` };
    }
  }
}

/**
 * One request to the daemon. Null when no daemon listens (no socket file, or a stale one: the command
 * then works from the journal alone). Throws a ControlError when a daemon may be there but cannot be
 * asked (permission, no answer in time, garbage): a caller must not then act as if it were stopped.
 */
export function askDaemon(path: string, request: object, timeoutMs = 5000): Promise<Record<string, unknown> | null> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(path);
    let data = '';
    let settled = false;
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      fn();
    };
    const timer = setTimeout(
      () => settle(() => reject(new ControlError('TIMEOUT', `the daemon did not answer on ${path} within ${Math.round(timeoutMs / 100) / 10} s`))),
      timeoutMs,
    );
    const parse = (line: string): void => {
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        settle(() => reject(new ControlError('BAD_ANSWER', `the control socket ${path} answered something that is not JSON`)));
        return;
      }
      if (isRecord(value)) settle(() => resolve(value));
      else settle(() => reject(new ControlError('BAD_ANSWER', `the control socket ${path} answered a JSON value that is not an object`)));
    };
    socket.setEncoding('utf8');
    socket.once('connect', () => socket.write(JSON.stringify(request) + '\n'));
    socket.on('data', (chunk: string) => {
      data += chunk;
      const newline = data.indexOf('\n');
      if (newline !== -1) parse(data.slice(0, newline));
      else if (data.length > MAX_ANSWER_BYTES) settle(() => reject(new ControlError('BAD_ANSWER', `the control socket ${path} answered more than ${MAX_ANSWER_BYTES} bytes`)));
    });
    socket.once('end', () => {
      if (data.trim() !== '') parse(data);
      else settle(() => reject(new ControlError('BAD_ANSWER', `the control socket ${path} closed without an answer`)));
    });
    socket.once('error', (error) => {
      const code = errnoOf(error);
      if (code === 'ENOENT' || code === 'ECONNREFUSED') settle(() => resolve(null));
      else if (code === 'EACCES' || code === 'EPERM') {
        settle(() =>
          reject(new ControlError('DENIED', `no permission to use the control socket ${path}: run as root or as the daemon's user`, { cause: error })),
        );
      } else settle(() => reject(new ControlError('IO', `control socket ${path}: ${messageOf(error)}`, { cause: error })));
    });
  });
}
