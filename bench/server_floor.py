#!/usr/bin/env python3
"""The floor of bench/run: the least time any client of the server can take.

A minimal IMAP client that asks the server for what a sync needs, keeps no
state database and writes no more than the new mail. It times itself from
before it connects to the tagged answer of its LOGOUT (no process start), and
prints the seconds. What a synchronising tool takes beyond this is its own
work; a target ratio against mbsync below floor / mbsync cannot be met by any
client of that server in that run.

  resync   connects, logs in with ENABLE QRESYNC and LIST-STATUS pipelined
           behind the login (one round trip), and for every folder whose
           UIDVALIDITY, UIDNEXT or HIGHESTMODSEQ moved since the last call
           sends SELECT (QRESYNC ...), which answers the changed flags and the
           vanished UIDs itself, and one UID FETCH of the new messages' flags
           and bodies, every folder's commands at once (one round trip).
           The folders' statuses are kept in --state for the next call; with
           --record it only records them (the set-up before the first call).
           With --durable-into MAILDIR it also delivers the new messages as
           a sync must at least: each into a file of tmp/, made durable (one
           syncfs), renamed into new/, and new/ fsync'd, before it stops the
           clock.
  initial  downloads every message's flags and body over --connections
           connections, as a first sync does: the first lists the folders,
           the others log in beside it; chunks of --chunk messages are
           shared between them, each connection keeping two in flight.
           With --while-copying SRC DEST it also copies SRC to DEST and makes
           the copy durable (`cp -r`, then `sync -f`, as bench/run's disk
           floor does) at the same time, and stops the clock when both are
           done: on a machine whose cores the server shares, the least a
           durable first sync that writes its files from one thread (as
           `cp` does) can take.
"""

import argparse
import collections
import ctypes
import json
import os
import re
import socket
import subprocess
import ssl
import sys
import threading
import time

RECV = 256 * 1024
TLS_RECORD = 16 * 1024
STATUS_ITEMS = "UIDVALIDITY UIDNEXT HIGHESTMODSEQ MESSAGES"
STATUS_LINE = re.compile(rb'^\* STATUS ("(?:[^"\\]|\\.)*"|\S+) \((.*)\)$')
LITERAL = re.compile(rb"\{(\d+)\+?\}$")


class ServerRefused(Exception):
    """A command ended in NO or BAD, or the server closed the connection."""


class Connection:
    """One IMAP connection over TLS, its commands tagged in order."""

    def __init__(self, args):
        context = ssl.create_default_context(cafile=args.ca_file)
        raw = socket.create_connection((args.host, args.port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = context.wrap_socket(raw, server_hostname=args.host)
        self.buffer = bytearray(RECV)
        self.view = memoryview(self.buffer)
        self.start = self.end = 0
        self.next_tag = 0
        self.read_line()  # the greeting

    def send(self, *commands):
        """Sends the commands together; returns their tags."""
        tags, lines = [], []
        for command in commands:
            self.next_tag += 1
            tag = b"f%d" % self.next_tag
            tags.append(tag)
            lines.append(tag + b" " + command.encode() + b"\r\n")
        self.sock.sendall(b"".join(lines))
        return tags

    def _receive(self, into):
        count = self.sock.recv_into(into)
        if count == 0:
            raise ServerRefused("the server closed the connection")
        return count

    def _fill(self, wanted=0):
        """Reads more after what is buffered, first making room for WANTED
        bytes from the start, or what is buffered, and a TLS record (16 KiB
        at most) after it."""
        room = max(wanted, self.end - self.start) + TLS_RECORD
        if len(self.buffer) - self.start < room:
            kept = self.end - self.start
            self.buffer[:kept] = self.buffer[self.start : self.end]
            self.start, self.end = 0, kept
            if len(self.buffer) < room:
                self.view.release()
                self.buffer.extend(bytes(room - len(self.buffer)))
                self.view = memoryview(self.buffer)
        self.end += self._receive(self.view[self.end :])

    def _take(self, count):
        """A literal of COUNT bytes, kept."""
        while self.end - self.start < count:
            self._fill(count)
        taken = bytes(self.buffer[self.start : self.start + count])
        self.start += count
        return taken

    def _skip(self, count):
        """Passes over a literal of COUNT bytes without keeping it."""
        available = self.end - self.start
        if count <= available:
            self.start += count
            return
        count -= available
        while True:
            received = self._receive(self.view)
            if received >= count:
                self.start, self.end = count, received
                return
            count -= received

    def read_line(self, literals=None):
        """One response line, its literals left out (each as `{N}`); with
        LITERALS, a list, they are kept there."""
        parts = []
        while True:
            end = self.buffer.find(b"\r\n", self.start, self.end)
            while end < 0:
                scanned = max(0, self.end - self.start - 1)
                self._fill()
                end = self.buffer.find(b"\r\n", self.start + scanned, self.end)
            part = bytes(self.buffer[self.start : end])
            self.start = end + 2
            parts.append(part)
            literal = LITERAL.search(part)
            if not literal:
                return b"".join(parts)
            if literals is None:
                self._skip(int(literal.group(1)))
            else:
                literals.append(self._take(int(literal.group(1))))

    def read_until(self, tag, literals=None):
        """The untagged lines up to TAG's answer; ServerRefused unless OK."""
        lines = []
        while True:
            line = self.read_line(literals)
            if line.startswith(tag + b" "):
                if not line[len(tag) + 1 :].startswith(b"OK"):
                    raise ServerRefused(line.decode(errors="replace"))
                return lines
            lines.append(line)

    def login(self, user, password, *behind):
        """LOGIN with BEHIND pipelined after it; the last command's lines."""
        tags = self.send(f"LOGIN {quote(user)} {quote(password)}", *behind)
        lines = []
        for tag in tags:
            lines = self.read_until(tag)
        return lines

    def logout(self):
        self.read_until(self.send("LOGOUT")[0])
        self.sock.close()


def quote(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def statuses(lines):
    """{wire name: {ITEM: number}} from the STATUS lines of a LIST-STATUS."""
    found = {}
    for line in lines:
        match = STATUS_LINE.match(line)
        if not match:
            continue
        name = match.group(1).decode()
        if name.startswith('"'):
            name = re.sub(r"\\(.)", r"\1", name[1:-1])
        items = match.group(2).split()
        found[name] = {
            items[i].decode().upper(): int(items[i + 1]) for i in range(0, len(items) - 1, 2)
        }
    return found


def list_status():
    return f'LIST "" "*" RETURN (STATUS ({STATUS_ITEMS}))'


def resync(args, password):
    try:
        with open(args.state) as state_file:
            known = json.load(state_file)
    except FileNotFoundError:
        known = None
    if known is None and not args.record:
        sys.exit(f"{args.state}: no recorded statuses; run with --record first")

    started = time.perf_counter()
    connection = Connection(args)
    now = statuses(connection.login(args.user, password, "ENABLE QRESYNC", list_status()))
    commands = []
    for name, status in sorted(now.items()):
        before = (known or {}).get(name)
        if args.record or before == status:
            continue
        if before is None or before["UIDVALIDITY"] != status["UIDVALIDITY"]:
            commands.append(f"SELECT {quote(name)}")
            commands.append("UID FETCH 1:* (UID FLAGS BODY.PEEK[])")
            continue
        commands.append(
            f"SELECT {quote(name)} (QRESYNC ({before['UIDVALIDITY']} {before['HIGHESTMODSEQ']}))"
        )
        if status["UIDNEXT"] > before["UIDNEXT"]:
            commands.append(f"UID FETCH {before['UIDNEXT']}:* (UID FLAGS BODY.PEEK[])")
    bodies = [] if args.durable_into else None
    for tag in connection.send(*commands):
        connection.read_until(tag, bodies)
    if bodies:
        # LOGOUT goes out first: its answer comes while the files are made durable.
        logout = connection.send("LOGOUT")[0]
        store_durably(bodies, args.durable_into)
        connection.read_until(logout)
        connection.sock.close()
    else:
        connection.logout()
    seconds = time.perf_counter() - started

    with open(args.state, "w") as state_file:
        json.dump(now, state_file)
    print(f"{seconds:.4f}")


def store_durably(bodies, maildir):
    """What a sync must do at least with new mail (Maildir's delivery): each
    body written to a file in tmp/, made durable, renamed into new/, and
    new/ fsync'd. One syncfs makes the files durable, the cheapest way on a
    quiet disk (this runs after both tools, whose own syncs left it so);
    without syncfs (not Linux), each file's fsync."""
    stamp = f"{time.time_ns()}.floor{os.getpid()}"
    names = [f"{stamp}_{i}" for i in range(len(bodies))]
    tmp, new = os.path.join(maildir, "tmp"), os.path.join(maildir, "new")
    syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
    for name, body in zip(names, bodies):
        descriptor = os.open(os.path.join(tmp, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(descriptor, body)
            if syncfs is None:
                os.fsync(descriptor)
        finally:
            os.close(descriptor)
    if syncfs is not None:
        descriptor = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if syncfs(descriptor) != 0:
                raise OSError(ctypes.get_errno(), "syncfs failed", tmp)
        finally:
            os.close(descriptor)
    for name in names:
        os.rename(os.path.join(tmp, name), os.path.join(new, name))
    descriptor = os.open(new, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def initial(args, password):
    started = time.perf_counter()
    copy = None
    if args.while_copying:
        copy = subprocess.Popen(
            ["sh", "-c", 'cp -r "$1" "$2" && sync -f "$2"', "copy", *args.while_copying]
        )
    chunks = collections.deque()
    lock = threading.Lock()
    listed = threading.Event()
    failures = []

    def work(connection):
        # Two chunks in flight: the next FETCH is on its way while one is read.
        selected, in_flight = None, collections.deque()
        while True:
            with lock:
                chunk = chunks.popleft() if chunks else None
            if chunk is not None:
                folder, first, last = chunk
                commands = []
                if folder != selected:
                    commands.append(f"EXAMINE {quote(folder)}")
                    selected = folder
                commands.append(f"FETCH {first}:{last} (UID FLAGS BODY.PEEK[])")
                in_flight.append(connection.send(*commands))
            if chunk is not None and len(in_flight) < 2:
                continue
            if not in_flight:
                break
            for tag in in_flight.popleft():
                connection.read_until(tag)
        connection.logout()

    def helper():
        try:
            connection = Connection(args)
            connection.login(args.user, password)
            listed.wait()
            work(connection)
        except Exception as error:  # reported by the main thread
            failures.append(error)
            listed.set()

    helpers = [threading.Thread(target=helper) for _ in range(args.connections - 1)]
    for thread in helpers:
        thread.start()
    try:
        first = Connection(args)
        now = statuses(first.login(args.user, password, list_status()))
        for name, status in sorted(now.items(), key=lambda item: -item[1]["MESSAGES"]):
            for start in range(1, status["MESSAGES"] + 1, args.chunk):
                chunks.append((name, start, min(start + args.chunk - 1, status["MESSAGES"])))
    finally:
        listed.set()
    work(first)
    for thread in helpers:
        thread.join()
    if failures:
        raise failures[0]
    if copy is not None and copy.wait() != 0:
        sys.exit(f"server floor: copying {args.while_copying[0]} failed")
    print(f"{time.perf_counter() - started:.4f}")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["resync", "initial"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument(
        "--password-env", required=True, help="the environment variable holding the password"
    )
    parser.add_argument("--state", help="resync: the file keeping the folders' statuses")
    parser.add_argument("--record", action="store_true", help="resync: record the statuses only")
    parser.add_argument(
        "--durable-into",
        metavar="MAILDIR",
        help="resync: deliver the new messages durably into MAILDIR (its tmp/ and new/)",
    )
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument(
        "--while-copying",
        nargs=2,
        metavar=("SRC", "DEST"),
        help="initial: copy SRC to DEST durably at the same time",
    )
    args = parser.parse_args()
    password = os.environ.get(args.password_env)
    if password is None:
        sys.exit(f"the password variable {args.password_env} is not set")
    if args.mode == "resync" and not args.state:
        sys.exit("resync needs --state")
    try:
        (resync if args.mode == "resync" else initial)(args, password)
    except (OSError, ServerRefused) as error:
        sys.exit(f"server floor: {error}")


if __name__ == "__main__":
    main()
