#!/usr/bin/env python3
"""A counting TCP relay for bench/run.

Listens on 127.0.0.1 and forwards every connection to a target address,
counting the bytes sent from the server to the client (TLS included: these
are the bytes on the wire). Both benchmarked tools connect through it, so
their "bytes from server" columns are measured the same way. On SIGTERM or
SIGINT it writes the count to --count-file and exits.

With --delay-ms D every chunk is held D ms in each direction before it is
passed on, so a request and its answer take 2*D ms longer: a round-trip time
without a netem-capable kernel. Bandwidth and TCP window effects of a real
link are not modelled.

One thread and non-blocking sockets: a tool that writes while it reads (IMAP
pipelining) can never deadlock against the relay.
"""

import argparse
import collections
import errno
import os
import selectors
import signal
import socket
import sys
import time

CHUNK = 256 * 1024
# Stop reading from a side once this much waits to be passed on, so a slow
# reader makes the relay push back instead of buffering the whole mailbox.
MAX_QUEUED = 8 * 1024 * 1024


class Stop(Exception):
    """Raised by the signal handler to leave the event loop."""


class Direction:
    """Bytes flowing from one socket to another, each chunk due at a time."""

    def __init__(self, src, dst, delay):
        self.src = src
        self.dst = dst
        self.delay = delay
        self.chunks = collections.deque()  # (due, memoryview)
        self.queued = 0
        self.src_open = True
        self.shut = False

    def receive(self, now):
        """Queues what the source has; notes when it has closed."""
        try:
            data = self.src.recv(CHUNK)
        except BlockingIOError:
            return
        if not data:
            self.src_open = False
            return
        self.chunks.append((now + self.delay, memoryview(data)))
        self.queued += len(data)

    def flush(self, now):
        """Sends every chunk that is due; returns how many bytes went out."""
        sent_total = 0
        while self.chunks and self.chunks[0][0] <= now:
            due, view = self.chunks[0]
            try:
                sent = self.dst.send(view)
            except BlockingIOError:
                break
            sent_total += sent
            self.queued -= sent
            if sent < len(view):
                self.chunks[0] = (due, view[sent:])
                break
            self.chunks.popleft()
        if not self.chunks and not self.src_open and not self.shut:
            self.shut = True
            self.dst.shutdown(socket.SHUT_WR)
        return sent_total

    def wants_read(self):
        return self.src_open and self.queued < MAX_QUEUED

    def blocked(self, now):
        """A due chunk waits for the destination to accept more."""
        return bool(self.chunks) and self.chunks[0][0] <= now

    def next_due(self):
        return self.chunks[0][0] if self.chunks else None


class Pair:
    """One relayed connection: client->server (up) and server->client (down)."""

    def __init__(self, client, server, delay):
        self.client = client
        self.server = server
        self.connected = False
        self.up = Direction(client, server, delay)
        self.down = Direction(server, client, delay)

    def sockets(self):
        return (self.client, self.server)

    def interest(self, sock, now):
        if sock is self.server and not self.connected:
            return selectors.EVENT_WRITE
        outgoing, incoming = (self.up, self.down) if sock is self.client else (self.down, self.up)
        mask = selectors.EVENT_READ if outgoing.wants_read() else 0
        if incoming.blocked(now):
            mask |= selectors.EVENT_WRITE
        return mask

    def finished(self):
        return self.up.shut and self.down.shut


class Relay:
    def __init__(self, listener, target, delay):
        self.listener = listener
        self.target = target
        self.delay = delay
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ, None)
        self.pairs = []
        self.received = 0

    def accept(self):
        try:
            client, _ = self.listener.accept()
        except BlockingIOError:
            return
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        for sock in (client, server):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Connecting without blocking keeps other connections flowing while
        # this one waits a round trip for the server.
        code = server.connect_ex(self.target)
        if code not in (0, errno.EINPROGRESS):
            print(f"relay: connecting to {self.target[0]}:{self.target[1]}: "
                  f"{os.strerror(code)}", file=sys.stderr)
            client.close()
            server.close()
            return
        self.pairs.append(Pair(client, server, self.delay))

    def watch(self, sock, mask, pair):
        try:
            self.selector.get_key(sock)
            registered = True
        except KeyError:
            registered = False
        if not mask:
            if registered:
                self.selector.unregister(sock)
        elif registered:
            self.selector.modify(sock, mask, pair)
        else:
            self.selector.register(sock, mask, pair)

    def close(self, pair):
        for sock in pair.sockets():
            self.watch(sock, 0, pair)
            sock.close()
        self.pairs.remove(pair)

    def step(self):
        now = time.monotonic()
        timeout = None
        for pair in list(self.pairs):
            try:
                if pair.connected:
                    pair.up.flush(now)
                    self.received += pair.down.flush(now)
            except OSError:
                self.close(pair)
                continue
            if pair.finished():
                self.close(pair)
                continue
            for sock in pair.sockets():
                self.watch(sock, pair.interest(sock, now), pair)
            for direction in (pair.up, pair.down):
                due = direction.next_due()
                if due is not None and due > now:
                    timeout = due - now if timeout is None else min(timeout, due - now)
        for key, events in self.selector.select(timeout):
            pair = key.data
            if pair is None:
                self.accept()
            elif pair not in self.pairs:
                continue  # closed by an earlier event of this round
            elif key.fileobj is pair.server and not pair.connected:
                code = pair.server.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    print(f"relay: connecting to {self.target[0]}:{self.target[1]}: "
                          f"{os.strerror(code)}", file=sys.stderr)
                    self.close(pair)
                else:
                    pair.connected = True
            elif events & selectors.EVENT_READ:
                outgoing = pair.up if key.fileobj is pair.client else pair.down
                try:
                    outgoing.receive(time.monotonic())
                except OSError:
                    self.close(pair)
            # Writable sockets are served by the flush at the top of the next step.


def parse_target(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def write_atomically(path, text):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="listen port on 127.0.0.1 (0: any free)")
    parser.add_argument("--port-file", help="write the listening port here once ready")
    parser.add_argument("--target", type=parse_target, required=True, help="HOST:PORT of the server")
    parser.add_argument("--count-file", required=True, help="bytes server->client, written on exit")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay per direction")
    args = parser.parse_args()

    def stop(_signum, _frame):
        raise Stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", args.port))
    except OSError as e:
        print(f"relay: cannot listen on 127.0.0.1:{args.port}: {e}", file=sys.stderr)
        return 2
    listener.listen(64)
    listener.setblocking(False)
    if args.port_file:
        write_atomically(args.port_file, f"{listener.getsockname()[1]}\n")
    relay = Relay(listener, args.target, args.delay_ms / 1000.0)
    try:
        while True:
            relay.step()
    except Stop:
        pass
    write_atomically(args.count_file, f"{relay.received}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
