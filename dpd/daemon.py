"""Becoming a daemon: the lock, detaching with a readiness pipe, sd_notify.

Order matters and is fixed by `cli.run_daemon`: the config is checked and the
lock taken while still attached (errors reach the terminal), then the
process detaches before any thread exists (no fork after threads), and the
waiting parent exits only when the daemon says it is ready, or failed.
"""
import errno
import fcntl
import os
import socket
import sys
import time

from . import procfs
from .printable import printable
from .safefile import UnsafePath, check_owned, open_parent, parse_pid, same_file

LOCK_TRIES = 100         # x 10 ms: a status probe holds a shared lock for microseconds,
                         # and a daemon that just won the lock writes its pid at once


class LockRefused(OSError):
    """The lock is held, but not by a daemon of ours: "already running" would lie."""


def take_lock(path, program):
    """An fd holding an exclusive lock on `path`, or None if `program` runs already.

    The kernel drops the lock when its holder dies, however it dies, so a
    stale pid file never blocks a start; the lock, not the pid, means "running".
    A daemon that stops removes its pid file while still holding the lock, so
    a lock won on a file no longer at `path` is worthless: try again. Anyone
    who can read the file can hold a lock on it, so a held lock counts as
    "running" only when the pid written in it is a live `program` of this user
    (SPEC 5.2); the file itself must be ours and writable by us alone.
    """
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        os.makedirs(directory, 0o755, exist_ok=True)
    for _ in range(LOCK_TRIES):
        fd = _open_lock_file(path)
        try:
            check_owned(fd, path)
            if _lock(fd) and same_file(fd, path):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        if _held_by(path, program):
            return None
        time.sleep(0.01)
    raise LockRefused('%s is locked, but not by a running %s of this user (another user may '
                      'hold it to keep the daemon from starting)' % (path, program))


def _open_lock_file(path):
    """Created or opened through its directory reached as pid files are (no link
    followed that anyone but root made: root's lock is no file of /etc)."""
    dir_fd, base = open_parent(path)
    try:
        return os.open(base, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                       dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def _held_by(path, program):
    """True if the pid written in the lock file is a live `program` run by us."""
    try:
        with open(path, 'rb') as f:
            pid = parse_pid(f.read(64))
    except OSError:
        return False
    return pid is not None and procfs.runs(pid, program, os.geteuid())


def _lock(fd):
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise


def write_pid(lock_fd):
    os.ftruncate(lock_fd, 0)
    os.pwrite(lock_fd, b'%d\n' % os.getpid(), 0)


def is_locked(path):
    """True while someone holds the lock on `path` (for dpd-ctl and scripts)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


class Readiness:
    """The daemon's end of the pipe its waiting parent reads."""

    def __init__(self, fd):
        self.fd = fd

    def ready(self, note=''):
        """Up; `note` is printed by the parent (a warning the operator must see)."""
        self._say(b'0\n%s' % note.encode('utf-8', 'replace'))

    def failed(self, code, message):
        self._say(b'%d\n%s' % (code, message.encode('utf-8', 'replace')))

    def _say(self, data):
        if self.fd is not None:
            try:
                os.write(self.fd, data)
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None


def detach():
    """Double fork and setsid; return a Readiness in the daemon. The original
    process never returns: it exits with what the daemon reports."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    first = os.fork()
    if first:
        os.close(write_fd)
        _wait_for_daemon(read_fd, first)
    os.close(read_fd)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.chdir('/')
    os.umask(0o022)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
    return Readiness(write_fd)


def _wait_for_daemon(read_fd, first):
    chunks = []
    while True:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.waitpid(first, 0)
    code, _, message = b''.join(chunks).partition(b'\n')
    if not code:
        sys.stderr.write('%s: the daemon exited before it was ready (see its log)\n'
                         % os.path.basename(sys.argv[0]))
        os._exit(1)
    if message:
        sys.stderr.write(printable(message.decode('utf-8', 'replace').rstrip('\n')) + '\n')
        sys.stderr.flush()
    os._exit(int(code))


def sd_notify(text):
    """One datagram to systemd's NOTIFY_SOCKET; nothing when it is not set."""
    address = os.environ.get('NOTIFY_SOCKET')
    if not address:
        return
    if address.startswith('@'):
        address = '\0' + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(text.encode(), address)
    except OSError:
        pass
