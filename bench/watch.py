"""The measuring half of bench/watch: starts `mailsync watch`, makes changes on
each side, times how soon the other side shows them, and reads the watcher's
resident memory before and after a long run of events. Every wait polls real
state with a deadline."""

import os
import random
import signal
import statistics
import subprocess
import sys
import time

MAILSYNC = os.environ["MAILSYNC"]
WORK = os.environ["WORK"]
EVENTS = int(os.environ["EVENTS"])
CHURN = int(os.environ["CHURN"])
CONF = os.environ["SANDBOX_CONF"]
ROOT = os.path.join(WORK, "Maildir")
DEADLINE = 30.0


def doveadm(*args):
    return subprocess.run(
        ["doveadm", "-c", CONF, *args], check=True, capture_output=True, text=True
    ).stdout


def message(n):
    return (
        f"From: bench@example.org\r\nTo: alice@example.org\r\n"
        f"Message-ID: <watch-bench-{n}-{random.random()}@example.org>\r\n"
        f"Subject: watch bench {n}\r\n\r\n" + "x" * 2000 + "\r\n"
    ).encode()


def local_files():
    found = []
    for sub in ("new", "cur"):
        d = os.path.join(ROOT, sub)
        found += [os.path.join(d, f) for f in os.listdir(d)]
    return found


def server_count(query="all"):
    out = doveadm("search", "-u", "alice", "mailbox", "INBOX", *query.split())
    return len(out.splitlines())


def wait(what, check):
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > DEADLINE:
            sys.exit(f"{what}: not seen within {DEADLINE} s")
        time.sleep(0.005)
    return time.monotonic() - start


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def with_flag(path, letter):
    base, _, flags = path.partition(":2,")
    flags = "".join(sorted(set(flags + letter)))
    return (base + ":2," + flags).replace("/new/", "/cur/")


def without_flag(path, letter):
    base, _, flags = path.partition(":2,")
    return (base + ":2," + flags.replace(letter, "")).replace("/new/", "/cur/")


def main():
    log = open(os.path.join(WORK, "watch.log"), "w")
    env = dict(os.environ)
    watcher = subprocess.Popen(
        [MAILSYNC, "--config", os.path.join(WORK, "config.toml"), "watch"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env,
    )
    try:
        wait("the first sync", lambda: os.path.isdir(os.path.join(ROOT, "cur"))
             and len(local_files()) == server_count())
        latency = {"server append": [], "server flag": [], "local new file": [], "local rename": []}
        serial = 0
        for _ in range(EVENTS):
            serial += 1
            before = len(local_files())
            subprocess.run(["doveadm", "-c", CONF, "save", "-u", "alice", "-m", "INBOX"],
                           input=message(serial), check=True)
            start = time.monotonic()
            wait("server append", lambda: len(local_files()) > before)
            latency["server append"].append(time.monotonic() - start)

            uid = doveadm("search", "-u", "alice", "mailbox", "INBOX", "UNFLAGGED").split()
            if uid:
                target = uid[1]
                flagged = sum(1 for f in local_files() if "F" in f.partition(":2,")[2])
                doveadm("flags", "add", "-u", "alice", "\\Flagged", "mailbox", "INBOX", "uid", target)
                start = time.monotonic()
                wait("server flag", lambda: sum(1 for f in local_files()
                                                if "F" in f.partition(":2,")[2]) > flagged)
                latency["server flag"].append(time.monotonic() - start)

            count = server_count()
            name = f"{int(time.time())}.M{serial}P{os.getpid()}.bench"
            with open(os.path.join(ROOT, "tmp", name), "wb") as f:
                f.write(message(100000 + serial))
            os.rename(os.path.join(ROOT, "tmp", name), os.path.join(ROOT, "new", name))
            start = time.monotonic()
            wait("local new file", lambda: server_count() > count)
            latency["local new file"].append(time.monotonic() - start)

            unseen = [f for f in local_files() if "S" not in f.partition(":2,")[2]]
            if unseen:
                seen_before = server_count("SEEN")
                os.rename(unseen[0], with_flag(unseen[0], "S"))
                start = time.monotonic()
                wait("local rename", lambda: server_count("SEEN") > seen_before)
                latency["local rename"].append(time.monotonic() - start)

        print(f"latency over {EVENTS} changes of each kind (seconds):")
        for kind, values in latency.items():
            if not values:
                continue
            values.sort()
            p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
            print(f"  {kind:16} p50 {statistics.median(values):6.3f}  p95 {p95:6.3f}")

        rss_before = rss_kib(watcher.pid)
        made = 0
        while made < CHURN:
            files = local_files()[:100]
            for path in files:
                flags = path.partition(":2,")[2]
                target = without_flag(path, "S") if "S" in flags else with_flag(path, "S")
                os.rename(path, target)
                made += 1
            if made % 1000 < 100:
                subprocess.run(["doveadm", "-c", CONF, "save", "-u", "alice", "-m", "INBOX"],
                               input=message(200000 + made), check=True)
                made += 1
        local_seen = lambda: sum(1 for f in local_files() if "S" in f.partition(":2,")[2])
        wait("the churn to settle", lambda: local_seen() == server_count("SEEN")
             and len(local_files()) == server_count())
        rss_after = rss_kib(watcher.pid)
        print(f"resident memory: {rss_before} KiB before, {rss_after} KiB after {made} more events")
    finally:
        watcher.send_signal(signal.SIGTERM)
        try:
            code = watcher.wait(timeout=10)
        except subprocess.TimeoutExpired:
            watcher.kill()
            sys.exit("watch did not end within 10 s of SIGTERM")
        print(f"watch ended with exit status {code} after SIGTERM")


main()
