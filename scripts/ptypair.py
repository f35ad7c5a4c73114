#!/usr/bin/env python3
"""Virtual serial ports for `scanbox demo` and the end-to-end tests, with nothing but python3.

For each NAME given, makes a pty pair, puts the slave in raw mode and points the symlink DIR/NAME at it
(the daemon opens that path, as it would open a /dev/serial/by-id/ link). The master side of port i is
relayed to file descriptor 3+i, which the parent process passed in as a pipe. The helper keeps its own
slave fd open, so the daemon can close and re-open its port without the master seeing a hangup.

Control lines on stdin:  `drop NAME` unplugs a port (the daemon's reads fail, the link disappears);
`restore NAME` plugs it back in (a new pty behind the same link). Replies, one JSON object per line, on stdout.
"""
import json
import os
import select
import sys
import tty


def log(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Port:
    def __init__(self, name, link, channel):
        self.name = name
        self.link = link
        self.channel = channel
        self.master = None
        self.slave = None
        self.path = None
        self.plug()

    def plug(self):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tty.setraw(self.master)
        self.path = os.ttyname(self.slave)
        tmp = self.link + ".new"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(self.path, tmp)
        os.replace(tmp, self.link)

    def unplug(self):
        if os.path.lexists(self.link):
            os.unlink(self.link)
        for fd in (self.master, self.slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.master = None
        self.slave = None


def main():
    if len(sys.argv) < 3:
        sys.stderr.write("usage: ptypair.py DIR NAME [NAME ...]\n")
        return 2
    directory = sys.argv[1]
    ports = [Port(name, os.path.join(directory, name), 3 + i) for i, name in enumerate(sys.argv[2:])]
    log({"ready": {p.name: {"link": p.link, "tty": p.path} for p in ports}})
    stdin_open = True
    control = b""
    while True:
        readable = [p.master for p in ports if p.master is not None] + [p.channel for p in ports]
        if stdin_open:
            readable.append(0)
        ready, _, _ = select.select(readable, [], [], 1.0)
        for fd in ready:
            if fd == 0:
                data = os.read(0, 4096)
                if not data:
                    # The parent went away: nothing left to relay for.
                    return 0
                control += data
                while b"\n" in control:
                    line, control = control.split(b"\n", 1)
                    words = line.decode().split()
                    if len(words) != 2:
                        continue
                    port = next((p for p in ports if p.name == words[1]), None)
                    if port is None:
                        log({"error": "no such port", "name": words[1]})
                    elif words[0] == "drop":
                        port.unplug()
                        log({"dropped": port.name})
                    elif words[0] == "restore":
                        if port.master is None:
                            port.plug()
                        log({"restored": port.name, "tty": port.path})
                continue
            for port in ports:
                if fd == port.master:
                    try:
                        data = os.read(fd, 4096)
                    except OSError:
                        data = b""
                    if data:
                        os.write(port.channel, data)
                elif fd == port.channel:
                    data = os.read(fd, 4096)
                    if not data:
                        return 0
                    if port.master is not None:
                        try:
                            os.write(port.master, data)
                        except OSError:
                            pass


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
