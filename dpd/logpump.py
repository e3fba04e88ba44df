"""Children's output: a named FIFO per process, drained by one thread each.

Why a FIFO and not a pipe: the child holds its end open read-write, so its
writes never fail with EPIPE or SIGPIPE while no worker reads; the next
worker re-opens the FIFO by path and reads what waited (SPEC 3.5). Why
splice and not read+write: data leaves the FIFO only as it lands in the log
file, so a worker killed at any instant loses nothing. splice refuses
O_APPEND files, so each chunk is placed at the file's current end (fstat,
taken once data is waiting), which also makes logrotate's copytruncate work.

The worker keeps a write end of its own (the keeper) so the pump never sees
EOF between two runs of the process; closing the keeper once the process is
gone for good lets the pump drain to EOF and end.
"""
import errno
import fcntl
import logging
import os
import select
import stat
import threading
import time

from .safefile import open_log

CHUNK = 1 << 20
PIPE_SIZE = 1 << 20
ROTATION_CHECK_SECONDS = 1.0
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EROFS)

log = logging.getLogger('dpd.logpump')


class Reopen:
    """A generation number bumped on USR1; each pump compares it with its own."""

    def __init__(self):
        self.generation = 0


class Pump(threading.Thread):
    """Moves one FIFO's bytes into one log file until EOF.

    Only this thread opens and closes its log fd: `retarget` hands it a new one
    to switch to, so no fd is ever closed under a running splice.
    """

    def __init__(self, name, reader, log_path, log_fd, owners, reopen, on_crash):
        super().__init__(name='pump:%s' % name, daemon=True)
        self.reader, self.log_path, self.log_fd = reader, log_path, log_fd
        self.owners, self.reopen, self.on_crash = owners, reopen, on_crash
        self.generation = reopen.generation
        self.next_check = time.monotonic() + ROTATION_CHECK_SECONDS
        self.dropped = 0                   # bytes lost since the last good write
        self._pending = None               # (path, fd) from retarget()
        self._lock = threading.Lock()
        self._readable = select.poll()
        self._readable.register(reader, select.POLLIN)

    def retarget(self, log_path, log_fd):
        """Write to another file from the next chunk on (the definition changed)."""
        with self._lock:
            if self._pending is not None:
                os.close(self._pending[1])
            self._pending = (log_path, log_fd)

    def run(self):
        try:
            while self._move_chunk():
                pass
        except Exception as err:  # a dead pump would freeze its child: say so loudly
            log.exception('%s: crashed', self.name)
            self.on_crash(self.name, repr(err))
        finally:
            os.close(self.reader)
            self._close_log()
            with self._lock:
                if self._pending is not None:
                    os.close(self._pending[1])

    def _move_chunk(self):
        # wait for data first: the file's end is taken after the wait, right
        # before the write, or a truncate during the wait would leave a hole
        self._readable.poll()
        self._take_pending()
        self._follow_rotation()
        if self.log_fd is None:
            return self._discard()
        try:
            moved = os.splice(self.reader, self.log_fd, CHUNK,
                              offset_dst=os.fstat(self.log_fd).st_size,
                              flags=os.SPLICE_F_NONBLOCK)
        except OSError as err:
            if err.errno in (errno.EINTR, errno.EAGAIN):
                return True
            if err.errno not in DISK_ERRORS:
                raise
            self._failing('cannot write %s: %s' % (self.log_path, err.strerror))
            return self._discard()
        if moved and self.dropped:
            log.warning('%s: writing to %s again; %d bytes were dropped',
                        self.name, self.log_path, self.dropped)
            self.dropped = 0
        return moved > 0

    def _take_pending(self):
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            self._close_log()
            self.log_path, self.log_fd = pending

    def _follow_rotation(self):
        """Reopen on USR1, or when the file was moved or deleted (checked each second)."""
        now = time.monotonic()
        asked = self.generation != self.reopen.generation
        if not asked and now < self.next_check:
            return
        self.generation, self.next_check = self.reopen.generation, now + ROTATION_CHECK_SECONDS
        if not asked and self.log_fd is not None and _same_file(self.log_fd, self.log_path):
            return
        self._close_log()
        try:
            self.log_fd = open_log(self.log_path, self.owners)
        except OSError as err:
            self._failing('cannot open %s: %s' % (self.log_path, err))

    def _failing(self, problem):
        if not self.dropped:
            log.error('%s: %s; dropping output until it works again', self.name, problem)

    def _discard(self):
        data = os.read(self.reader, CHUNK)
        self.dropped += len(data)
        return bool(data)

    def _close_log(self):
        if self.log_fd is not None:
            os.close(self.log_fd)
            self.log_fd = None


def _same_file(fd, path):
    try:
        on_disk, held = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


class OutputChannel:
    """The FIFO of one process name, its keeper fd and its pump."""

    def __init__(self, fifo_path, log_path, pump, keeper):
        self.fifo_path, self.log_path, self.pump, self.keeper = fifo_path, log_path, pump, keeper

    def child_fd(self):
        """A read-write fd on the FIFO for the child's stdout and stderr."""
        return os.open(self.fifo_path, os.O_RDWR | os.O_CLOEXEC)

    def close(self):
        """The process is gone for good: let the pump drain to EOF and end."""
        if self.keeper is not None:
            os.close(self.keeper)
            self.keeper = None


class Outputs:
    """Every process's output channel, by name; used by the executor only."""

    def __init__(self, fifo_dir, on_crash):
        self.fifo_dir, self.on_crash = fifo_dir, on_crash
        self.reopen = Reopen()
        self.channels = {}

    def attach(self, name, log_path, owners, via_pid=None):
        """The channel for `name` writing to `log_path`, created if needed.

        A new or changed log file is opened here, so a bad path fails the start
        with a clear error; an unchanged one stays with its pump. `via_pid`: an
        adopted process whose FIFO may have been replaced on disk; its own fd 1
        leads to the right pipe.
        """
        channel = self.channels.get(name)
        if channel is not None and channel.pump.is_alive() and channel.log_path == log_path:
            return channel
        log_fd = open_log(log_path, owners)
        if channel is not None and channel.pump.is_alive():
            channel.pump.retarget(log_path, log_fd)
            channel.log_path = log_path
            return channel
        try:
            channel = self._open(name, log_path, log_fd, owners, via_pid)
        except BaseException:
            os.close(log_fd)
            raise
        self.channels[name] = channel
        return channel

    def _open(self, name, log_path, log_fd, owners, via_pid):
        fifo = os.path.join(self.fifo_dir, name + '.fifo')
        _ensure_fifo(fifo)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        if via_pid is not None and not _same_pipe(reader, via_pid):
            os.close(reader)
            reader = os.open('/proc/%d/fd/1' % via_pid, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        keeper = os.open('/proc/self/fd/%d' % reader, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        os.set_blocking(reader, True)
        try:
            fcntl.fcntl(reader, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass  # over the per-user pipe budget: a smaller buffer still works
        pump = Pump(name, reader, log_path, log_fd, owners, self.reopen, self.on_crash)
        pump.start()
        return OutputChannel(fifo, log_path, pump, keeper)

    def close(self, name):
        channel = self.channels.pop(name, None)
        if channel is not None:
            channel.close()

    def reopen_all(self):
        self.reopen.generation += 1

    def drain(self, timeout):
        """Close every channel and wait (up to `timeout`) for the pumps to finish."""
        deadline = time.monotonic() + timeout
        for name in list(self.channels):
            channel = self.channels.pop(name)
            channel.close()
            channel.pump.join(max(0.0, deadline - time.monotonic()))


def _ensure_fifo(path):
    try:
        if stat.S_ISFIFO(os.lstat(path).st_mode):
            return
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.mkfifo(path, 0o600)


def _same_pipe(fd, pid):
    try:
        theirs = os.stat('/proc/%d/fd/1' % pid)
    except OSError:
        return True  # nothing better to offer; the path is all we have
    return os.fstat(fd).st_ino == theirs.st_ino
