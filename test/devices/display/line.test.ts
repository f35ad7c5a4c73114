import { SerialPortMock } from 'serialport';
import t from 'tap';
import { DisplayLine, inputFrame, outputFrame } from '../../../src/devices/display/line.js';
import type { SerialFrame } from '../../../src/devices/line-port.js';
import { memoryLogger } from '../../../src/log.js';

/** The display line on serialport's mock binding: every byte handed on unchanged, in order, counted (rule 7). */

const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 20));

t.test('parity: how the box reads and how it sends on', async (t) => {
  t.same(inputFrame('none'), { parity: 'none', stopBits: 1 });
  t.same(inputFrame('odd'), { parity: 'odd', stopBits: 1 });
  t.same(inputFrame('even'), { parity: 'even', stopBits: 1 });
  t.same(inputFrame('space'), { parity: 'even', stopBits: 1 }, 'a parity bit that is not checked');
  t.same(inputFrame('mark'), { parity: 'even', stopBits: 1 });
  t.same(outputFrame('mark'), { parity: 'none', stopBits: 2 }, 'mark = the same bits as 8N2');
  t.same(outputFrame('space'), { parity: 'even', stopBits: 1 });
  t.same(outputFrame('odd'), { parity: 'odd', stopBits: 1 });
});

function rig(outPath: string | null) {
  const log = memoryLogger('debug');
  const frames: Record<string, SerialFrame> = {};
  const mocks: Record<string, SerialPortMock> = {};
  const inPath = `/dev/ttyDISP${Math.random().toString(36).slice(2)}`;
  SerialPortMock.binding.createPort(inPath, { echo: false, record: true });
  if (outPath) SerialPortMock.binding.createPort(outPath, { echo: false, record: true });
  const line = new DisplayLine({
    path: inPath,
    outPath,
    baudRate: 2400,
    parity: 'space',
    log,
    backoffMs: [10],
    openPort: (path, baudRate, frame) => {
      frames[path] = frame;
      return (mocks[path] = new SerialPortMock({ path, baudRate, autoOpen: false }));
    },
  });
  const seen: Buffer[] = [];
  line.on('data', (chunk) => seen.push(chunk));
  return { line, log, frames, mocks, inPath, seen };
}

t.test('inline: every byte reaches the display unchanged, in order, before the box reads it', async (t) => {
  const outPath = `/dev/ttyDISPOUT${Math.random().toString(36).slice(2)}`;
  const { line, frames, mocks, inPath, seen } = rig(outPath);
  t.teardown(() => line.close());
  line.start();
  while (!mocks[inPath]?.isOpen || !mocks[outPath]?.isOpen) await settle();
  t.same(frames[inPath], { parity: 'even', stopBits: 1 });
  t.same(frames[outPath], { parity: 'even', stopBits: 1 });
  const chunks = [Buffer.from('0c1b7332', 'hex'), Buffer.from([0x00, 0xff, 0x80]), Buffer.from('1b514131322e35300d', 'hex')];
  for (const chunk of chunks) {
    mocks[inPath]!.port!.emitData(chunk);
    await settle();
  }
  t.equal(mocks[outPath]!.port!.recording.toString('hex'), Buffer.concat(chunks).toString('hex'), 'forwarded byte for byte');
  t.equal(Buffer.concat(seen).toString('hex'), Buffer.concat(chunks).toString('hex'), 'and read');
  t.same(line.counts, { received: 16, forwarded: 16, notForwarded: 0 });
  t.equal(line.inline, true);
});

t.test('the out port down: the bytes that could not reach the display are counted and said once', async (t) => {
  const outPath = `/dev/ttyDISPGONE${Math.random().toString(36).slice(2)}`;
  const { line, log, mocks, inPath, seen } = rig(null);
  t.teardown(() => line.close());
  // An out port whose device is not there: the open fails and is retried; the line is read all the same.
  const inline = new DisplayLine({
    path: inPath,
    outPath,
    baudRate: 2400,
    parity: 'none',
    log,
    backoffMs: [10_000],
    openPort: (path, baudRate) => (mocks[path] = new SerialPortMock({ path, baudRate, autoOpen: false })),
  });
  inline.on('data', (chunk) => seen.push(chunk));
  t.teardown(() => inline.close());
  inline.start();
  while (!mocks[inPath]?.isOpen) await settle();
  mocks[inPath]!.port!.emitData(Buffer.from('abc'));
  mocks[inPath]!.port!.emitData(Buffer.from('de'));
  await settle();
  t.same(inline.counts, { received: 5, forwarded: 0, notForwarded: 5 });
  t.equal(Buffer.concat(seen).toString(), 'abcde', 'the box still reads the line');
  t.equal(log.lines.filter((l) => l.startsWith('<3>display-out: bytes from the register cannot reach the customer display')).length, 1);
});

t.test('a passive tap writes nothing anywhere', async (t) => {
  const { line, mocks, inPath } = rig(null);
  t.teardown(() => line.close());
  line.start();
  while (!mocks[inPath]?.isOpen) await settle();
  mocks[inPath]!.port!.emitData(Buffer.from('0c', 'hex'));
  await settle();
  t.equal(mocks[inPath]!.port!.recording.length, 0, 'nothing sent back to the register');
  t.same(line.counts, { received: 1, forwarded: 0, notForwarded: 0 });
  t.equal(line.inline, false);
});
