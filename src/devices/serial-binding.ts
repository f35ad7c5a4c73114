import { read } from 'node:fs';
import { promisify } from 'node:util';
import { SerialPort } from 'serialport';

/**
 * serialport's own binding with one change, at the depth where the defect is: a read that returns 0 bytes is
 * the end of the port (the tty was hung up: the cable pulled, the adapter gone, the pty's other side closed)
 * and is reported as a disconnect. The stock Linux binding (bindings-cpp unixRead) reads again at once on 0
 * bytes, for ever, without waiting on the port: a hang-up that lands while a read is under way is then never
 * noticed, the process spins on reads of nothing and never reopens the port.
 *
 * With the port opened in raw mode and non-blocking, "no data yet" is EAGAIN, never 0, so 0 can only mean
 * the end.
 */

const readAsync = promisify(read);

/** What the patched read needs of an opened port binding (bindings-cpp's LinuxPortBinding has it all). */
export interface ReadablePort {
  fd: number | null;
  readonly isOpen: boolean;
  poller: { once(event: 'readable', listener: (error?: Error | null) => void): unknown };
  read(buffer: Buffer, offset: number, length: number): Promise<{ bytesRead: number; buffer: Buffer }>;
}

type ReadFn = (fd: number, buffer: Buffer, offset: number, length: number, position: null) => Promise<{ bytesRead: number }>;

function canceled(): Error {
  return Object.assign(new Error('Port is not open'), { canceled: true });
}

/** Replaces the port's read by one that ends on 0 bytes; returns the same port. */
export function endOnEof<T extends ReadablePort>(port: T, readFd: ReadFn = readAsync): T {
  port.read = async (buffer, offset, length) => {
    for (;;) {
      if (!port.isOpen || port.fd === null) throw canceled();
      try {
        const { bytesRead } = await readFd(port.fd, buffer, offset, length, null);
        if (bytesRead === 0) {
          throw Object.assign(new Error('the port was hung up (a read returned end of file)'), { code: 'EOF', disconnect: true });
        }
        return { bytesRead, buffer };
      } catch (error) {
        const code = (error as { code?: unknown }).code;
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK' || code === 'EINTR') {
          if (!port.isOpen) throw canceled();
          await new Promise<void>((resolve, reject) => port.poller.once('readable', (err) => (err ? reject(err) : resolve())));
          continue;
        }
        if (code === 'EBADF' || code === 'ENXIO' || code === 'EIO' || code === 'UNKNOWN' || (error as { errno?: unknown }).errno === -1) {
          (error as { disconnect?: boolean }).disconnect = true;
        }
        throw error;
      }
    }
  };
  return port;
}

type Binding = typeof SerialPort.binding;
/** bindings-cpp types `open` per platform; the one detected here takes the options serialport passes it. */
type OpenAny = (options: unknown) => Promise<unknown>;

/** The platform's binding whose ports end on 0-byte reads. */
export const endingBinding: Binding = {
  ...SerialPort.binding,
  async open(options: unknown) {
    const port = await (SerialPort.binding.open as OpenAny)(options);
    return endOnEof(port as ReadablePort);
  },
} as unknown as Binding;
