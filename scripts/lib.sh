# shellcheck shell=bash disable=SC2034
# Shell functions shared by scripts/test, scripts/demo, bench/run and .ci/run.
# Source it; it defines functions and REPO_ROOT and changes nothing else.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# What building and testing need on Debian/Ubuntu: the Dovecot IMAP and POP3
# servers for the sandbox, openssl for its certificate, and the C libraries the
# crates link against (native-tls -> libssl, rusqlite -> libsqlite3); `time`
# measures the peak memory of test runs.
TEST_PACKAGES=(dovecot-imapd dovecot-pop3d openssl pkg-config libssl-dev libsqlite3-dev
    gcc libc6-dev ca-certificates time)
# systemd-analyze checks the contrib units (verify, security rating).
TEST_PACKAGES+=(systemd)
# dpkg-deb and dpkg-shlibdeps build the .deb; man-db finds its pages (man -w).
TEST_PACKAGES+=(dpkg-dev)
TEST_PACKAGES+=(man-db)
# mbsync, whose Maildir the adoption tests take over.
TEST_PACKAGES+=(isync)
# The reader tests check what notmuch sees in a synced Maildir.
TEST_PACKAGES+=(notmuch)
# The interop tests: GNU Mailutils' imap4d installs normally; saslpasswd2 makes
# Cyrus's users; unshare and mount (util-linux, mount) set up Courier's view.
TEST_PACKAGES+=(mailutils-imap4d sasl2-bin util-linux mount)

# Cyrus and Courier conflict with dovecot-imapd and start services when
# installed, so the interop tests run them from unpacked packages instead.
CYRUS_DEBS=(cyrus-common cyrus-imapd cyrus-pop3d libical3 libpcre3 libxapian30)
COURIER_DEBS=(courier-imap courier-base courier-authdaemon courier-authlib
    courier-authlib-userdb libcourier-unicode4 libgamin0 gamin libpcre3)

say() { printf '==> %s\n' "$*" >&2; }

die() {
    printf 'error: %s\n' "$1" >&2
    exit "${2:-1}"
}

# timed FILE COMMAND...: runs COMMAND and writes "seconds kilobytes" to FILE:
# its wall time to the millisecond, and its peak RSS from /usr/bin/time's %M.
# Not %e, which counts 10 ms ticks: one tick moved a 20-30 ms no-op resync's
# ratio by a third. The clock is read around /usr/bin/time by a process that
# is already running, so the time includes /usr/bin/time's start (under 1 ms
# here) but no shell fork. Returns COMMAND's status.
timed() {
    python3 -c '
import subprocess, sys, time
out, command = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
status = subprocess.call(["/usr/bin/time", "-f", "%M", "-o", out + ".rss", *command])
seconds = time.perf_counter() - start
with open(out + ".rss") as rss:
    kilobytes = rss.read().split()[-1]
with open(out, "w") as result:
    result.write(f"{seconds:.3f} {kilobytes}\n")
sys.exit(status if status >= 0 else 128 - status)
' "$@"
    local status=$?
    rm -f "$1.rss"
    return "$status"
}

# Runs a command as root: directly when we are root, else through sudo (which
# may ask for a password only when someone is at the terminal).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        if [ -t 0 ]; then sudo "$@"; else sudo -n "$@"; fi
    else
        die "need root to run: $* (and sudo is not installed)"
    fi
}

_apt_updated=no

# Installs the Debian packages among "$@" that are not installed yet. Installing
# dovecot-core also starts the system's own Dovecot service where an init system
# runs; that is harmless: the sandbox uses its own config, directory and ports.
ensure_packages() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        say "not a Debian-like system: make sure these (or their equivalents) are installed: $*"
        return 0
    fi
    local missing=() pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed'; then
            missing+=("$pkg")
        fi
    done
    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi
    say "installing ${missing[*]}"
    if [ "$_apt_updated" = no ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        _apt_updated=yes
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# Makes sure cargo is on PATH (rustup installs it in ~/.cargo/bin, which
# non-login shells such as CI steps may not have on PATH).
ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1 && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
        PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
        export PATH
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        cat >&2 <<'MSG'
error: cargo (the Rust toolchain) is not installed. Install it with rustup:

    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y
    . "$HOME/.cargo/env"

then run this command again.
MSG
        exit 2
    fi
}

# Where the unpacked Cyrus and Courier live between runs.
test_servers_dir() {
    printf '%s\n' "${MAILSYNC_TEST_SERVERS:-${XDG_CACHE_HOME:-$HOME/.cache}/mailsync-test-servers}"
}

# Unpacks the Debian packages "$@" into the directory ROOT (first argument)
# unless an earlier run did; a marker file written last says it is complete.
_unpack_debs() {
    local root=$1 pkg deb
    shift
    if [ -f "$root/.unpacked" ] && [ "$(cat "$root/.unpacked")" = "$*" ]; then
        return 0
    fi
    say "unpacking $* into $root"
    rm -rf "$root" "$root.debs"
    mkdir -p "$root.debs"
    if ! (cd "$root.debs" && apt-get download "$@" >/dev/null 2>&1); then
        # A fresh machine may not have the package lists yet.
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        _apt_updated=yes
        (cd "$root.debs" && apt-get download "$@" >/dev/null) ||
            die "apt-get download $* failed: the interop tests need these packages"
    fi
    for deb in "$root.debs"/*.deb; do
        dpkg -x "$deb" "$root"
    done
    rm -rf "$root.debs"
    # Debian merged /lib into /usr/lib: one library directory serves both.
    if [ -d "$root/lib" ]; then
        cp -a "$root/lib/." "$root/usr/lib/"
        rm -rf "${root:?}/lib"
    fi
    printf '%s\n' "$*" >"$root/.unpacked"
}

# Makes the IMAP servers of the interop tests available: imap4d installed,
# Cyrus and Courier unpacked (not installed) under test_servers_dir, the
# `cyrus` system user present. Exports MAILSYNC_TEST_SERVERS for the tests.
ensure_test_servers() {
    local dir
    dir=$(test_servers_dir)
    mkdir -p "$dir"
    _unpack_debs "$dir/cyrus" "${CYRUS_DEBS[@]}"
    _unpack_debs "$dir/courier" "${COURIER_DEBS[@]}"
    if ! getent passwd cyrus >/dev/null; then
        say "creating the system user cyrus (group mail) for the Cyrus tests"
        as_root useradd --system --gid mail --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin cyrus
    fi
    MAILSYNC_TEST_SERVERS=$dir
    export MAILSYNC_TEST_SERVERS
}
