import { execFileSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { closeSync, constants, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { endOnEof, type ReadablePort } from '../../src/devices/serial-binding.js';

/**
 * The patched read on a real file descriptor that behaves as a hung-up tty does: the read end of a FIFO
 * whose writer has gone returns 0 bytes. The stock binding would read again at once for ever; the patched
 * one reports the end as a disconnect, which the stream turns into a lost port that is reopened.
 */

/** The read runs on libuv's thread pool: wait for it to come back and wait on the poller. */
async function waitingOn(poller: EventEmitter): Promise<void> {
  for (let i = 0; i < 2000 && poller.listenerCount('readable') === 0; i++) await new Promise((resolve) => setTimeout(resolve, 1));
}

function fifo(t: Test) {
  const dir = mkdtempSync(join(tmpdir(), 'scanbox-fifo-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'line');
  execFileSync('mkfifo', [path]);
  const reader = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const writer = openSync(path, constants.O_WRONLY);
  const poller = new EventEmitter();
  const port: ReadablePort & { closed: boolean } = {
    fd: reader,
    closed: false,
    get isOpen() {
      return !this.closed;
    },
    poller,
    read: async () => {
      throw new Error('the stock read must not be used');
    },
  };
  t.teardown(() => {
    for (const fd of [reader, writer]) {
      try {
        closeSync(fd);
      } catch {
        // closed by the test
      }
    }
  });
  return { port: endOnEof(port), writer, poller };
}

t.test('bytes are read as they come; nothing yet waits on the poller, not a busy loop', async (t) => {
  const { port, writer, poller } = fifo(t);
  writeSync(writer, 'PAY 1 R1\r\n');
  const buffer = Buffer.alloc(64);
  const first = await port.read(buffer, 0, 64);
  t.equal(buffer.subarray(0, first.bytesRead).toString(), 'PAY 1 R1\r\n');
  let reads = 0;
  const waiting = port.read(buffer, 0, 64).then((r) => (reads++, r));
  await waitingOn(poller);
  t.equal(poller.listenerCount('readable'), 1, 'EAGAIN: it waits on the port');
  writeSync(writer, 'STATUS\r\n');
  poller.emit('readable', null);
  const second = await waiting;
  t.equal(reads, 1);
  t.equal(buffer.subarray(0, second.bytesRead).toString(), 'STATUS\r\n');
});

t.test('the other side gone (a read returns 0 bytes): a disconnect, not a spin', async (t) => {
  const { port, writer } = fifo(t);
  closeSync(writer);
  const error = await port.read(Buffer.alloc(16), 0, 16).then(
    () => null,
    (e: unknown) => e as { code?: string; disconnect?: boolean; canceled?: boolean },
  );
  t.match(error, { code: 'EOF', disconnect: true }, 'reported as a lost port');
  t.notOk(error?.canceled, 'not a cancel: the stream closes the port as disconnected');
});

t.test('a port closed under a waiting read: canceled, as the stock binding does', async (t) => {
  const { port, poller } = fifo(t);
  const waiting = port.read(Buffer.alloc(16), 0, 16).catch((e: unknown) => e);
  await waitingOn(poller);
  (port as unknown as { closed: boolean }).closed = true;
  poller.emit('readable', null);
  t.match(await waiting, { canceled: true });
});
