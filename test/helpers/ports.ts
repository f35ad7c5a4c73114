import { readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';

/**
 * Resolves once the process `pid` waits for input on the serial port behind `link`: the port's file
 * descriptor is in one of its epoll sets (Linux /proc), so its read loop has found the port empty and
 * polls it. Only then is an unplug "while idle": right after an open, the first read (run in libuv's
 * thread pool) may not have run yet, and once the pty is hung up a read returns 0 bytes, which
 * @serialport/bindings-cpp reads again at once, for ever, without polling: the loss is never reported.
 * That is a bug of the port layer of its own, not the case these tests are about.
 */
export async function waitUntilPolled(pid: number, link: string, timeoutMs = 10000): Promise<void> {
  const tty = realpathSync(link);
  const target = (fd: string): string => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      return '';
    }
  };
  const polled = (): boolean => {
    const fds = readdirSync(`/proc/${pid}/fd`);
    const ports = fds.filter((fd) => target(fd) === tty);
    return fds
      .filter((fd) => target(fd) === 'anon_inode:[eventpoll]')
      .some((epoll) => {
        let info: string;
        try {
          info = readFileSync(`/proc/${pid}/fdinfo/${epoll}`, 'utf8');
        } catch {
          return false;
        }
        return ports.some((fd) => new RegExp(`^tfd:\\s+${fd}\\s`, 'm').test(info));
      });
  };
  const deadline = performance.now() + timeoutMs;
  while (!polled()) {
    if (performance.now() > deadline) throw new Error(`process ${pid} does not poll ${link} (${tty}) within ${timeoutMs} ms`);
    // The state is read again, not assumed: the interval only keeps the check from spinning.
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
