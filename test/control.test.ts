import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import {
  ControlError,
  ControlServer,
  DEFAULT_CONTROL_SOCKET,
  MAX_REQUEST_BYTES,
  askDaemon,
  controlSocketPath,
  reverseAnswer,
  type ControlHandlers,
} from '../src/control.js';
import type { Health } from '../src/health.js';
import type { Sale } from '../src/journal/journal.js';
import { memoryLogger } from '../src/log.js';

/** The control socket on real Unix sockets in a temporary directory. */

function tempSocket(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'scanbox-ctl-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'control.sock');
}

interface Fixture {
  server: ControlServer;
  path: string;
  reversed: string[];
  health: { value: Health };
  log: ReturnType<typeof memoryLogger>;
}

async function start(t: Test, reverse?: ControlHandlers['reverse']): Promise<Fixture> {
  const path = tempSocket(t);
  const reversed: string[] = [];
  const health = { value: { kind: 'READY' } as Health };
  const log = memoryLogger();
  const server = await ControlServer.listen(
    path,
    {
      health: () => health.value,
      reverse:
        reverse ??
        (async (outTradeNo) => {
          reversed.push(outTradeNo);
          return { ok: true, state: 'reversed', code: 'REVERSED', text: 'reversed at WeChat Pay' };
        }),
    },
    log,
  );
  t.teardown(() => server.close());
  return { server, path, reversed, health, log };
}

/** Sends raw bytes and collects everything the server says until it closes. */
function raw(path: string, payload: string | Buffer, options: { end?: boolean } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(path);
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (data += chunk));
    socket.on('close', () => resolve(data));
    socket.on('error', (error) => {
      // A server that closes on an overlong request may reset the rest of our write; what it said counts.
      if ((error as NodeJS.ErrnoException).code === 'EPIPE' || (error as NodeJS.ErrnoException).code === 'ECONNRESET') return;
      reject(error);
    });
    socket.on('connect', () => {
      socket.write(payload);
      if (options.end) socket.end();
    });
  });
}

t.test('controlSocketPath: the first RUNTIME_DIRECTORY, else /run/scanbox', async (t) => {
  t.equal(controlSocketPath({ RUNTIME_DIRECTORY: '/run/scanbox' }), '/run/scanbox/control.sock');
  t.equal(controlSocketPath({ RUNTIME_DIRECTORY: '/run/scanbox:/run/other' }), '/run/scanbox/control.sock');
  t.equal(controlSocketPath({}), DEFAULT_CONTROL_SOCKET);
  t.equal(controlSocketPath({ RUNTIME_DIRECTORY: '' }), DEFAULT_CONTROL_SOCKET);
  t.equal(controlSocketPath({ RUNTIME_DIRECTORY: 'relative/dir' }), DEFAULT_CONTROL_SOCKET);
});

t.test('health: the handler answer, one line, then the server closes; socket mode 0660', async (t) => {
  const f = await start(t);
  t.equal(statSync(f.path).mode & 0o777, 0o660);
  t.same(await askDaemon(f.path, { cmd: 'health' }), { kind: 'READY' });
  f.health.value = { kind: 'BUSY', ref: 'R-1' };
  t.same(await askDaemon(f.path, { cmd: 'health' }), { kind: 'BUSY', ref: 'R-1' });
  f.health.value = { kind: 'OFFLINE', text: 'WeChat Pay unreachable (NETWORK)' };
  t.same(await askDaemon(f.path, { cmd: 'health' }), { kind: 'OFFLINE', text: 'WeChat Pay unreachable (NETWORK)' });
  const said = await raw(f.path, '{"cmd":"health"}\n');
  t.equal(said, '{"kind":"OFFLINE","text":"WeChat Pay unreachable (NETWORK)"}\n', 'exactly one line, and the connection closed');
});

t.test('reverse: the handler gets the out_trade_no and its answer comes back; a bad one never reaches it', async (t) => {
  const f = await start(t);
  t.same(await askDaemon(f.path, { cmd: 'reverse', out_trade_no: 'BENCH01ABCD00000007' }), {
    ok: true,
    state: 'reversed',
    code: 'REVERSED',
    text: 'reversed at WeChat Pay',
  });
  t.same(f.reversed, ['BENCH01ABCD00000007']);
  for (const bad of [undefined, '', 'has space', 'x'.repeat(33), 42, '../../etc', 'A|B*C@D']) {
    const answer = await askDaemon(f.path, { cmd: 'reverse', out_trade_no: bad });
    t.match(answer, { error: /out_trade_no/ }, `refused: ${JSON.stringify(bad)}`);
  }
  t.same(f.reversed, ['BENCH01ABCD00000007'], 'the handler saw only the good one');
});

t.test('unknown cmd, bad JSON, a request that is not an object: {"error"} and the server stays up', async (t) => {
  const f = await start(t);
  t.match(await askDaemon(f.path, { cmd: 'shutdown' }), { error: /unknown cmd "shutdown"/ });
  t.match(await askDaemon(f.path, { nocmd: true }), { error: /"cmd"/ });
  t.match(JSON.parse(await raw(f.path, 'not json\n')), { error: /not JSON/ });
  t.match(JSON.parse(await raw(f.path, '[1,2]\n')), { error: /JSON object/ });
  t.match(JSON.parse(await raw(f.path, '"health"\n')), { error: /JSON object/ });
  t.same(await askDaemon(f.path, { cmd: 'health' }), { kind: 'READY' });
});

t.test('a request line over 4 KiB: an error, the connection closed, the server unharmed', async (t) => {
  const f = await start(t);
  const said = await raw(f.path, 'x'.repeat(MAX_REQUEST_BYTES * 3));
  t.match(JSON.parse(said.trim()), { error: /longer than 4096 bytes/ });
  const withNewline = await raw(f.path, JSON.stringify({ cmd: 'health', pad: 'y'.repeat(MAX_REQUEST_BYTES) }) + '\n');
  t.match(JSON.parse(withNewline.trim()), { error: /longer than 4096 bytes/ }, 'also when the newline comes too late');
  t.same(await askDaemon(f.path, { cmd: 'health' }), { kind: 'READY' });
  t.ok(f.log.lines.some((l) => l.startsWith('<4>control request refused: line too long')));
});

t.test('one request per connection; a request ended by shutdown instead of a newline is still answered', async (t) => {
  const f = await start(t);
  const two = await raw(f.path, '{"cmd":"health"}\n{"cmd":"reverse","out_trade_no":"A1"}\n');
  t.equal(two.trim().split('\n').length, 1);
  t.same(f.reversed, [], 'the second line was not acted on');
  t.same(JSON.parse(await raw(f.path, '{"cmd":"health"}', { end: true })), { kind: 'READY' });
  t.equal(await raw(f.path, '', { end: true }), '', 'an empty connection is just closed');
});

t.test('a failing handler answers {"error"}; a client gone before the answer harms nothing', async (t) => {
  let release: () => void = () => {};
  const slow = new Promise<void>((resolve) => (release = resolve));
  let calls = 0;
  const f = await start(t, async (outTradeNo) => {
    calls++;
    if (outTradeNo === 'BOOM') throw new Error('journal is damaged');
    await slow;
    return { ok: true, state: 'reversed', code: 'REVERSED', text: 'done' };
  });
  t.same(await askDaemon(f.path, { cmd: 'reverse', out_trade_no: 'BOOM' }), { error: 'journal is damaged' });
  t.ok(f.log.lines.some((l) => l.startsWith('<3>control request failed')));

  const socket = net.connect(f.path);
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write('{"cmd":"reverse","out_trade_no":"SLOW1"}\n');
  await new Promise((resolve) => setTimeout(resolve, 50));
  socket.destroy();
  release();
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.equal(calls, 2, 'the reversal went on without its client');
  t.same(await askDaemon(f.path, { cmd: 'health' }), { kind: 'READY' });
});

t.test('close(grace): a reversal under way is still answered; without grace its client is dropped', async (t) => {
  const slowReverse = async (outTradeNo: string) => {
    await new Promise((resolve) => setTimeout(resolve, 150));
    return { ok: true, state: 'reversed', code: 'REVERSED', text: outTradeNo };
  };
  const graceful = await start(t, slowReverse);
  const asked = askDaemon(graceful.path, { cmd: 'reverse', out_trade_no: 'GRACE1' });
  await new Promise((resolve) => setTimeout(resolve, 30));
  await graceful.server.close(5000);
  t.same(await asked, { ok: true, state: 'reversed', code: 'REVERSED', text: 'GRACE1' });
  t.notOk(existsSync(graceful.path));

  const abrupt = await start(t, slowReverse);
  const dropped = askDaemon(abrupt.path, { cmd: 'reverse', out_trade_no: 'DROP1' });
  await new Promise((resolve) => setTimeout(resolve, 30));
  await abrupt.server.close();
  await t.rejects(dropped, { code: 'BAD_ANSWER' });
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.notOk(abrupt.log.lines.some((l) => l.startsWith('<3>')), 'answering a dropped client is not an error');
});

t.test('a silent client does not hold up another', async (t) => {
  const f = await start(t);
  const silent = net.connect(f.path);
  t.teardown(() => silent.destroy());
  await new Promise((resolve) => silent.once('connect', resolve));
  t.same(await askDaemon(f.path, { cmd: 'health' }), { kind: 'READY' });
});

t.test('a stale socket file (a daemon killed with SIGKILL) is replaced; a live one or a plain file is not', async (t) => {
  const path = tempSocket(t);
  const killed = spawnSync(
    process.execPath,
    ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`],
    { encoding: 'utf8' },
  );
  t.equal(killed.signal, 'SIGKILL');
  t.ok(statSync(path).isSocket(), 'the dead listener left its socket file');
  t.equal(await askDaemon(path, { cmd: 'health' }), null, 'askDaemon: nobody listens on a stale file');

  const log = memoryLogger();
  const handlers: ControlHandlers = { health: () => ({ kind: 'READY' }), reverse: async () => ({ ok: false, state: 'unknown', code: null, text: '' }) };
  const server = await ControlServer.listen(path, handlers, log);
  t.same(await askDaemon(path, { cmd: 'health' }), { kind: 'READY' });

  await t.rejects(ControlServer.listen(path, handlers, log), { code: 'IN_USE' }, 'a second daemon does not steal the socket');
  t.same(await askDaemon(path, { cmd: 'health' }), { kind: 'READY' }, 'the first still answers');
  await server.close();
  t.notOk(existsSync(path), 'close removes the socket file');
  t.equal(await askDaemon(path, { cmd: 'health' }), null);

  writeFileSync(path, 'not a socket');
  await t.rejects(ControlServer.listen(path, handlers, log), { code: 'NOT_A_SOCKET' });
  t.equal(readFileSync(path, 'utf8'), 'not a socket', 'a plain file is left alone');
});

t.test('askDaemon: null when nothing listens; an error when something is there but does not answer', async (t) => {
  const path = tempSocket(t);
  t.equal(await askDaemon(path, { cmd: 'health' }), null, 'no socket file');
  t.equal(await askDaemon(join(path, 'missing-dir', 'x.sock'), { cmd: 'health' }), null);

  // Reads (so it notices the client leave) but never answers.
  const mute = net.createServer((socket) => socket.resume());
  await new Promise<void>((resolve) => mute.listen(path, resolve));
  t.teardown(() => new Promise<void>((resolve) => mute.close(() => resolve())));
  const started = Date.now();
  await t.rejects(askDaemon(path, { cmd: 'health' }, 200), { code: 'TIMEOUT' });
  t.ok(Date.now() - started < 2000);
  mute.removeAllListeners('connection');
  mute.on('connection', (socket) => socket.resume().end('garbage\n'));
  const error = await askDaemon(path, { cmd: 'health' }).catch((e: unknown) => e);
  t.ok(error instanceof ControlError && error.code === 'BAD_ANSWER', 'garbage is an error, not a stopped daemon');
  mute.removeAllListeners('connection');
  mute.on('connection', (socket) => socket.resume().end());
  await t.rejects(askDaemon(path, { cmd: 'health' }), { code: 'BAD_ANSWER' }, 'closed without an answer');
});

t.test('reverseAnswer: the engine result as the socket says it', async (t) => {
  const sale = { state: 'reversed', finalCode: 'REVERSED' } as Sale;
  t.same(reverseAnswer({ ok: true, sale, text: 'reversed at WeChat Pay' }), { ok: true, state: 'reversed', code: 'REVERSED', text: 'reversed at WeChat Pay' });
  t.same(reverseAnswer({ ok: false, sale: null, text: 'no sale' }), { ok: false, state: 'unknown', code: null, text: 'no sale' });
});

t.test('refund: the handler gets REF, fen and RID; malformed requests never reach it; a daemon without refunds says so', async (t) => {
  const path = tempSocket(t);
  const asked: unknown[] = [];
  const server = await ControlServer.listen(
    path,
    {
      health: () => ({ kind: 'READY' }),
      reverse: async () => ({ ok: false, state: 'unknown', code: null, text: '' }),
      refund: async (request) => {
        asked.push(request);
        return { ok: true, state: 'accepted', line: `REFUNDED ${request.rid} ${request.ref} ${request.amountFen} X1`, text: 'accepted by WeChat Pay' };
      },
    },
    memoryLogger(),
  );
  t.teardown(() => server.close());
  t.same(await askDaemon(path, { cmd: 'refund', ref: 'R1', amount_fen: 500, rid: 'T1' }), {
    ok: true,
    state: 'accepted',
    line: 'REFUNDED T1 R1 500 X1',
    text: 'accepted by WeChat Pay',
  });
  for (const bad of [
    { ref: 'R 1', amount_fen: 500, rid: 'T1' },
    { ref: 'R1', amount_fen: 5.5, rid: 'T1' },
    { ref: 'R1', amount_fen: 0, rid: 'T1' },
    { ref: 'R1', amount_fen: '500', rid: 'T1' },
    { ref: 'R1', amount_fen: 500, rid: 'x'.repeat(33) },
    { ref: 'R1', amount_fen: 500 },
  ]) {
    t.match(await askDaemon(path, { cmd: 'refund', ...bad }), { error: /^refund needs/ }, `refused: ${JSON.stringify(bad)}`);
  }
  t.same(asked, [{ ref: 'R1', amountFen: 500, rid: 'T1' }], 'the handler saw only the good one');

  const plain = await start(t);
  t.match(await askDaemon(plain.path, { cmd: 'refund', ref: 'R1', amount_fen: 500, rid: 'T1' }), { error: 'this daemon takes no refunds' });
});
