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
  copy     `initial`'s download with each message's arrival date, every
           chunk appended with its flags and date to --to-user's folders
           below --prefix on the same server as one MULTIAPPEND with
           LITERAL+, on a connection of its own beside each source
           connection: the least an IMAP-to-IMAP migration can take.
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
        """Sends the commands (text, or bytes with literals) together;
        returns their tags."""
        tags, lines = [], []
        for command in commands:
            self.next_tag += 1
            tag = b"f%d" % self.next_tag
            tags.append(tag)
            if isinstance(command, str):
                command = command.encode()
            lines.append(tag + b" " + command + b"\r\n")
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


class Appender:
    """The destination of `copy`: each chunk fetched goes out as one
    MULTIAPPEND with LITERAL+ (no wait for a continuation), its answer read
    while the next chunks are fetched, two at most unread."""

    FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
    DATE = re.compile(rb'INTERNALDATE "([^"]*)"')

    def __init__(self, connection, prefix, naming):
        self.connection = connection
        self.prefix = prefix
        # Shared by every connection's appender: the first connection learns
        # the delimiter, the others append only after it has.
        self.naming = naming
        self.unread = collections.deque()

    def destination(self, folder):
        return f"{self.prefix}{self.naming['delimiter']}{folder}"

    def create(self, folders):
        """The destination folders; one that exists already is fine."""
        for tag in self.connection.send(*(f"CREATE {quote(self.destination(f))}" for f in folders)):
            try:
                self.connection.read_until(tag)
            except ServerRefused:
                pass

    def append(self, folder, lines, bodies):
        """Appends what one chunk's answer brought. The server may run two
        pipelined FETCHes of one folder side by side (an EXAMINE between
        them is never run so), so an answer can bring the other chunk's
        messages of the same folder, or none."""
        messages = [line for line in lines if b"BODY[] {" in line]
        if not messages:
            return
        parts = [b"APPEND " + quote(self.destination(folder)).encode()]
        for line, body in zip(messages, bodies):
            flags = b" ".join(f for f in self.FLAGS.search(line).group(1).split() if f != b"\\Recent")
            date = self.DATE.search(line).group(1)
            parts.append(b' (%s) "%s" {%d+}\r\n%s' % (flags, date, len(body), body))
        self.unread.extend(self.connection.send(b"".join(parts)))
        while len(self.unread) > 2:
            self.connection.read_until(self.unread.popleft())

    def finish(self):
        while self.unread:
            self.connection.read_until(self.unread.popleft())
        self.connection.logout()


def login(args, user, password_env):
    connection = Connection(args)
    connection.login(user, os.environ[password_env])
    return connection


def fetch_all(args, items, destination=None):
    """Fetches ITEMS of every message over --connections connections, chunks
    of --chunk messages shared between them, two in flight on each; with
    DESTINATION (a function making an `Appender` of a logged-in connection),
    each connection appends what it fetched on a connection of its own."""
    chunks = collections.deque()
    lock = threading.Lock()
    listed = threading.Event()
    failures = []

    def work(connection, appender):
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
                commands.append(f"FETCH {first}:{last} ({items})")
                in_flight.append((folder, connection.send(*commands)))
            if chunk is not None and len(in_flight) < 2:
                continue
            if not in_flight:
                break
            folder, tags = in_flight.popleft()
            bodies = [] if appender else None
            for tag in tags:
                lines = connection.read_until(tag, bodies)
            if appender:
                appender.append(folder, lines, bodies)
        connection.logout()
        if appender:
            appender.finish()

    def helper():
        try:
            connection = login(args, args.user, args.password_env)
            appender = destination() if destination else None
            listed.wait()
            work(connection, appender)
        except Exception as error:  # reported by the main thread
            failures.append(error)
            listed.set()

    helpers = [threading.Thread(target=helper) for _ in range(args.connections - 1)]
    for thread in helpers:
        thread.start()
    try:
        first = Connection(args)
        lines = first.login(args.user, os.environ[args.password_env], list_status())
        now = statuses(lines)
        appender = destination(delimiter_of(lines)) if destination else None
        if appender:
            appender.create(now)
        for name, status in sorted(now.items(), key=lambda item: -item[1]["MESSAGES"]):
            for start in range(1, status["MESSAGES"] + 1, args.chunk):
                chunks.append((name, start, min(start + args.chunk - 1, status["MESSAGES"])))
    finally:
        listed.set()
    work(first, appender)
    for thread in helpers:
        thread.join()
    if failures:
        raise failures[0]


def delimiter_of(lines):
    """The hierarchy delimiter of a LIST answer's first folder."""
    for line in lines:
        match = re.match(rb'^\* LIST \([^)]*\) "(.)"', line)
        if match:
            return match.group(1).decode()
    return "/"


def initial(args):
    started = time.perf_counter()
    copy = None
    if args.while_copying:
        copy = subprocess.Popen(
            ["sh", "-c", 'cp -r "$1" "$2" && sync -f "$2"', "copy", *args.while_copying]
        )
    fetch_all(args, "UID FLAGS BODY.PEEK[]")
    if copy is not None and copy.wait() != 0:
        sys.exit(f"server floor: copying {args.while_copying[0]} failed")
    print(f"{time.perf_counter() - started:.4f}")


def copy(args):
    started = time.perf_counter()
    naming = {"delimiter": "/"}

    def destination(delimiter=None):
        if delimiter is not None:
            naming["delimiter"] = delimiter
        connection = login(args, args.to_user, args.to_password_env)
        return Appender(connection, args.prefix, naming)

    fetch_all(args, "UID FLAGS INTERNALDATE BODY.PEEK[]", destination)
    print(f"{time.perf_counter() - started:.4f}")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["resync", "initial", "copy"])
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
    parser.add_argument("--to-user", help="copy: the destination's user (the same server)")
    parser.add_argument(
        "--to-password-env", help="copy: the environment variable holding its password"
    )
    parser.add_argument("--prefix", default="Floor", help="copy: the destination folders' parent")
    args = parser.parse_args()
    for variable in [args.password_env, args.to_password_env]:
        if variable is not None and variable not in os.environ:
            sys.exit(f"the password variable {variable} is not set")
    if args.mode == "resync" and not args.state:
        sys.exit("resync needs --state")
    if args.mode == "copy" and not (args.to_user and args.to_password_env):
        sys.exit("copy needs --to-user and --to-password-env")
    try:
        if args.mode == "resync":
            resync(args, os.environ[args.password_env])
        else:
            (initial if args.mode == "initial" else copy)(args)
    except (OSError, ServerRefused) as error:
        sys.exit(f"server floor: {error}")


if __name__ == "__main__":
    main()
